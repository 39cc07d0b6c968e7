/**
 * The SRS maps through Postfix's own table clients: `postmap -q` with socketmap:inet: and tcp:
 * tables (Debian postfix), against the service on free loopback ports. postmap exits 0 and
 * prints the value when found, exits 1 silently when not found, and fails loudly on an error.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { mailSrs } from '../../helpers/srs-peers';
import { SRS_SECRET, startSrsService, type SrsFixture } from '../../helpers/srs-service';

const pfDir = mkdtempSync(path.join(tmpdir(), 'postmap-srs-'));
writeFileSync(path.join(pfDir, 'main.cf'), 'compatibility_level = 3.6\n');

function postmap(key: string, table: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('/usr/sbin/postmap', ['-c', pfDir, '-q', key, table], { timeout: 10000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? -1) : 0, stdout, stderr });
    });
  });
}

let f: SrsFixture;
beforeAll(async () => {
  f = await startSrsService();
});
afterAll(async () => await f.service.close());

describe('SRS maps through postmap (Postfix table clients)', () => {
  it('socketmap: forward gives an SRS0 address that Mail::SRS reverses, reverse gives the sender back', async () => {
    const sm = `socketmap:inet:127.0.0.1:${f.service.ports.socketmap}`;
    const fwd = await postmap('alice@orig.example', `${sm}:forward`);
    expect([fwd.code, fwd.stderr]).toEqual([0, '']);
    const srs = fwd.stdout.trim();
    expect(srs).toMatch(/^SRS0=.{4}=..=orig\.example=alice@fwd\.example$/);
    expect(await mailSrs({ secrets: [SRS_SECRET] }, [`reverse ${srs}`])).toEqual(['OK alice@orig.example']);
    expect(await postmap(srs, `${sm}:reverse`)).toEqual({ code: 0, stdout: 'alice@orig.example\n', stderr: '' });
  });

  it('socketmap: a local sender and a forged SRS address are not found (exit 1, no error)', async () => {
    const sm = `socketmap:inet:127.0.0.1:${f.service.ports.socketmap}`;
    expect(await postmap('bob@local.example', `${sm}:forward`)).toEqual({ code: 1, stdout: '', stderr: '' });
    expect(await postmap('SRS0=abcd=AB=orig.example=mallory@fwd.example', `${sm}:reverse`)).toEqual({ code: 1, stdout: '', stderr: '' });
  });

  it('tcp_table: forward and reverse as postsrsd served them, including a key Postfix %-encodes', async () => {
    // Postfix looks an address up in external form: a local part with a space comes quoted.
    const fwd = await postmap('"jo smith"@orig.example', `tcp:127.0.0.1:${f.service.ports.tcpForward}`);
    expect([fwd.code, fwd.stderr]).toEqual([0, '']);
    const srs = fwd.stdout.trim();
    expect(srs).toMatch(/^"SRS0=.{4}=..=orig\.example=jo smith"@fwd\.example$/);
    expect(await postmap(srs, `tcp:127.0.0.1:${f.service.ports.tcpReverse}`)).toEqual({ code: 0, stdout: '"jo smith"@orig.example\n', stderr: '' });
    expect(await postmap('SRS0=abcd=AB=orig.example=mallory@fwd.example', `tcp:127.0.0.1:${f.service.ports.tcpReverse}`)).toEqual({ code: 1, stdout: '', stderr: '' });
  });

  it('socketmap and tcp_table: a sender longer than any SRS key (1.5 KB) is not found, so the mail leaves unrewritten, not deferred', async () => {
    const long = `${'x'.repeat(1500)}@orig.example`;
    expect(await postmap(long, `socketmap:inet:127.0.0.1:${f.service.ports.socketmap}:forward`)).toEqual({ code: 1, stdout: '', stderr: '' });
    expect(await postmap(long, `tcp:127.0.0.1:${f.service.ports.tcpForward}`)).toEqual({ code: 1, stdout: '', stderr: '' });
  });

  it('socketmap: a map name the service does not serve is a lookup error, not "not found"', async () => {
    const r = await postmap('alice@orig.example', `socketmap:inet:127.0.0.1:${f.service.ports.socketmap}:virtual`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/unknown map name/);
  });
});
