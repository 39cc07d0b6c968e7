/**
 * ARC (RFC 8617): chains sealed by dkimpy are validated; our seals are validated by dkimpy.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isPostsealError } from '../../src/errors';
import { corpusDir, corpusMessage, corpusZone, inboundStages, ourAuthResults, startAuthRoundTrip, type AuthRoundTrip } from '../helpers/auth';
import { loadTestBank } from '../helpers/banks';

const arcDir = path.resolve(__dirname, '../fixtures/messages/arc');
const arcMessage = (f: string) => readFileSync(path.join(arcDir, f));
const keyFile = path.join(corpusDir, 'keys/other2048.pem');

let rt: AuthRoundTrip;
beforeAll(async () => {
  rt = await startAuthRoundTrip(structuredClone(corpusZone), {
    default: { stages: [...inboundStages, 'arc-seal'], dmarc: { onReject: 'tag' }, arcSeal: { domain: 'example.org', selector: 'rsa', keyFile } },
  });
});
afterAll(() => rt.close());

function dkimpyArc(message: string): Promise<{ cv: string; reason: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile('/usr/bin/python3', [path.resolve(__dirname, '../fixtures/scripts/arc-verify-dkimpy.py'), rt.dns.server], (err, stdout) =>
      err ? reject(err) : resolve(JSON.parse(stdout) as { cv: string; reason: string }),
    );
    child.stdin!.end(Buffer.from(message, 'latin1'));
  });
}

const arcOf = (delivered: string) =>
  ourAuthResults(delivered)[0]
    .split(';')
    .find((p) => p.trim().startsWith('arc='))
    ?.trim();

test('a chain sealed by dkimpy validates: arc=pass, and our set i=2 cv=pass validates in dkimpy', async () => {
  const original = arcMessage('arc-pass.eml');
  const { final, delivered } = await rt.send(original);
  expect(final?.code).toBe(250);
  expect(arcOf(delivered!)).toMatch(/^arc=pass/);
  expect(delivered).toMatch(/^ARC-Seal: i=2; a=rsa-sha256; t=\d+; cv=pass;/);
  expect(delivered!.endsWith(original.toString('latin1'))).toBe(true);
  expect(await dkimpyArc(delivered!)).toMatchObject({ cv: 'pass' });
});

test('a chain broken after sealing is arc=fail and is continued with cv=fail, never as valid', async () => {
  const { delivered } = await rt.send(arcMessage('arc-tampered.eml'));
  expect(arcOf(delivered!)).toMatch(/^arc=fail/);
  expect(delivered).toMatch(/^ARC-Seal: i=2; a=rsa-sha256; t=\d+; cv=fail;/);
  // dkimpy reads our cv=fail as the end of the chain: nothing after us can call it valid.
  expect(await dkimpyArc(delivered!)).toEqual({ cv: null, reason: 'ARC-Seal[2] reported failure, the chain is terminated' });
});

test('mail without a chain gets set i=1 cv=none, which dkimpy validates', async () => {
  const { delivered } = await rt.send(corpusMessage('relaxed-relaxed.eml'));
  expect(delivered).toMatch(/^ARC-Seal: i=1; a=rsa-sha256; t=\d+; cv=none;/);
  expect(delivered).toMatch(/\r\nARC-Authentication-Results: i=1; filter\.test;\r\n\tdkim=pass/);
  expect(await dkimpyArc(delivered!)).toMatchObject({ cv: 'pass' });
});

test('a bank with arc-seal but without its key or without arc-verify is refused when the configuration loads', () => {
  expect(() => loadTestBank({ stages: ['arc-verify', 'arc-seal'] })).toThrow(
    expect.objectContaining({ code: 'CFG_INCONSISTENT', message: expect.stringMatching(/\/arcSeal: arc-seal needs domain, selector and keyFile/) }),
  );
  let err: unknown;
  try {
    loadTestBank({ stages: ['arc-seal'], arcSeal: { domain: 'example.org', selector: 'rsa', keyFile } });
  } catch (e) {
    err = e;
  }
  expect(isPostsealError(err, 'CFG_INCONSISTENT')).toBe(true);
  expect((err as Error).message).toMatch(/\/stages: arc-seal needs arc-verify/);
});
