/**
 * The seven-bit stage's check that lets a message through without the MIME walk
 * (src/stages/seven-bit/clean.ts): it says "no change" only where the walk's plan changes
 * nothing, on hand-made edge cases (line lengths at the limit, labels split across chunks,
 * comments) and on random MIME trees cut into random chunks.
 */
import fc from 'fast-check';
import { MimeWalker } from '../../src/lib/mime/structure';
import { needsNoChange } from '../../src/stages/seven-bit/clean';
import { planSevenBit } from '../../src/stages/seven-bit/plan';
import { mimeTree, serialize } from '../lib/mime/mime-arbitrary';

const signal = new AbortController().signal;

async function* chunksOf(body: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < body.length; i += size) yield body.subarray(i, i + size);
}

function check(body: string | Buffer, opts: { labels?: string[]; chunk?: number } = {}): Promise<boolean> {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  return needsNoChange(opts.labels ?? [], chunksOf(bytes, opts.chunk ?? Math.max(1, bytes.length)), signal);
}

/** Whether the walk's plan changes or reports anything. */
function planDoesSomething(body: Buffer, contentType: string, transferEncoding: string | undefined, maxDepth: number): boolean {
  const w = new MimeWalker(contentType, transferEncoding, { maxDepth });
  w.push(body);
  w.end(body.length);
  const plan = planSevenBit(w.root);
  return plan.edits.length > 0 || plan.topEncoding !== null || plan.eightBitHeader || plan.signed.length > 0 || plan.unconvertible.length > 0;
}

const MULTIPART = [
  '--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHello=20there\r\n',
  '--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n',
  '--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\r\nplain\r\n--b--\r\n',
].join('');

describe('needsNoChange', () => {
  it('lets a 7-bit multipart with 7bit, quoted-printable and base64 parts through, in one chunk or in chunks of 1 to 40 bytes', async () => {
    expect(await check(MULTIPART, { labels: ['7bit'] })).toBe(true);
    for (let size = 1; size <= 40; size++) expect([size, await check(MULTIPART, { chunk: size })]).toEqual([size, true]);
  });

  it('sends 8-bit bytes and NUL to the walk', async () => {
    expect(await check('Gr\xfc\xdfe\r\n')).toBe(false);
    expect(await check('a\0b\r\n')).toBe(false);
  });

  it('takes lines of 998 octets before a bare LF, and sends one of 998 octets and CRLF or of 999 to the walk (counting the CR on purpose), also split over chunks', async () => {
    const line = (n: number, eol: string) => `${'x'.repeat(n)}${eol}short\r\n`;
    for (const chunk of [100000, 7, 500, 997]) {
      expect(await check(line(998, '\n'), { chunk })).toBe(true);
      expect(await check(line(998, '\r\n'), { chunk })).toBe(false);
      expect(await check(line(999, '\n'), { chunk })).toBe(false);
      expect(await check(`short\r\n${'y'.repeat(998)}`, { chunk })).toBe(true);
      expect(await check(`short\r\n${'y'.repeat(999)}`, { chunk })).toBe(false);
    }
  });

  it('sends a part labelled 8bit or binary to the walk, in any case, with a comment inside, folded, or split over chunks', async () => {
    const labelled = (value: string) => `--b\r\nContent-Transfer-Encoding:${value}\r\n\r\nascii\r\n--b--\r\n`;
    for (const value of [' 8bit', ' BINARY', ' 8(x)bit', ' b(x)inary', '\r\n 8bit', ' 7bit (8 bits clean)']) {
      for (const chunk of [100000, 1, 3, 30]) expect([value, chunk, await check(labelled(value), { chunk })]).toEqual([value, chunk, false]);
    }
    expect(await check(labelled(' quoted-printable'), { chunk: 3 })).toBe(true);
  });

  it('sends a message whose top-level label could say 8bit or binary to the walk', async () => {
    expect(await check('ascii\r\n', { labels: ['8bit'] })).toBe(false);
    expect(await check('ascii\r\n', { labels: ['Binary'] })).toBe(false);
    expect(await check('ascii\r\n', { labels: ['quoted-printable'] })).toBe(true);
  });

  it('judges a label that ends the body without a line end, and one folded past 64 KiB goes to the walk', async () => {
    expect(await check('--b\r\nContent-Transfer-Encoding: 8bit', { chunk: 5 })).toBe(false);
    expect(await check('--b\r\nContent-Transfer-Encoding: 7bit', { chunk: 5 })).toBe(true);
    const folded = `--b\r\nContent-Transfer-Encoding: 7bit${'\r\n x'.repeat(30000)}\r\n\r\nbody\r\n`;
    expect(await check(folded, { chunk: 4096 })).toBe(false);
    expect(await check(folded)).toBe(true);
  });

  it('says "no change" on random MIME trees only where the walk plans none, and says it for some', async () => {
    let clean = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          tree: mimeTree,
          maxDepth: fc.integer({ min: 1, max: 6 }),
          eols: fc.array(fc.constantFrom('\r\n' as const, '\n' as const), { minLength: 1, maxLength: 5 }),
          chunk: fc.integer({ min: 1, max: 300 }),
        }),
        async ({ tree, maxDepth, eols, chunk }) => {
          const c = serialize(tree, maxDepth, eols);
          const labels = c.transferEncoding === undefined ? [] : [c.transferEncoding];
          if (!(await needsNoChange(labels, chunksOf(c.body, chunk), signal))) return;
          clean++;
          expect(planDoesSomething(c.body, c.contentType, c.transferEncoding, maxDepth)).toBe(false);
        },
      ),
      { numRuns: 400 },
    );
    expect(clean).toBeGreaterThan(20);
  });
});
