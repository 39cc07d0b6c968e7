/**
 * What the spam scanners are given (stages/spam/scan.ts scanSource): the message whole, or its
 * header and its body cut at the last line end within maxScanBytes, as amavisd-new cuts what
 * it gives spamd ($sa_mail_body_size_limit). Read back through the source, as a scanner reads it.
 */
import { scanSource } from '../../../src/stages/spam/scan';
import { testTransaction } from '../../helpers/stage-run';

const HEADER = 'From: <a@example.org>\r\nSubject: x\r\n\r\n';

async function read(source: { size: number; open(): AsyncIterable<Buffer> }): Promise<string> {
  const parts: Buffer[] = [];
  for await (const b of source.open()) parts.push(b);
  const text = Buffer.concat(parts).toString('latin1');
  expect(text.length).toBe(source.size);
  return text;
}

describe('the copy the spam scanners get', () => {
  it('is the whole message when the body is within maxScanBytes', async () => {
    const data = `${HEADER}${'a'.repeat(98)}\r\n`;
    const source = await scanSource(testTransaction(data).message, 100, new AbortController().signal);
    expect(source.truncatedBodyBytes).toBeUndefined();
    expect(await read(source)).toBe(data);
  });

  it('is the header and the body up to the last line end within maxScanBytes when the body is longer', async () => {
    const line = `${'b'.repeat(38)}\r\n`;
    const source = await scanSource(testTransaction(`${HEADER}${line.repeat(10)}`).message, 100, new AbortController().signal);
    expect(source.truncatedBodyBytes).toBe(80);
    expect(await read(source)).toBe(`${HEADER}${line.repeat(2)}`);
  });

  it('is cut at maxScanBytes itself when no line ends within it', async () => {
    const source = await scanSource(testTransaction(`${HEADER}${'c'.repeat(5000)}\r\n`).message, 1000, new AbortController().signal);
    expect(source.truncatedBodyBytes).toBe(1000);
    expect(await read(source)).toBe(`${HEADER}${'c'.repeat(1000)}`);
  });
});
