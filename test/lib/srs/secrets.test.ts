import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { isPostsealError } from '../../../src/errors';
import { readSrsSecrets } from '../../../src/lib/srs/secrets';
import { nodeBin, root } from '../../helpers/cli';

const dir = mkdtempSync(path.join(tmpdir(), 'srs-secrets-'));

function file(name: string, text: string, mode = 0o600): string {
  const f = path.join(dir, name);
  writeFileSync(f, text);
  chmodSync(f, mode);
  return f;
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isPostsealError(err) ? err.code : `not a PostsealError: ${String(err)}`;
  }
  return undefined;
}

describe('SRS secrets file', () => {
  it('reads one secret a line, the signing one first, skipping blank lines and CRLF', () => {
    expect(readSrsSecrets(file('ok', 'new-secret-1\r\n\nold-secret-2\n'))).toEqual(['new-secret-1', 'old-secret-2']);
  });

  it("signs with a line's trimmed form and also verifies with it as written (postsrsd keeps the blanks, pfix-srsd trims them)", () => {
    expect(readSrsSecrets(file('blanks', ' spaced secret \nplain-secret-2\n'))).toEqual(['spaced secret', 'plain-secret-2', ' spaced secret ']);
  });

  it('refuses a missing file', () => {
    expect(codeOf(() => readSrsSecrets(path.join(dir, 'nope')))).toBe('CFG_SRS_SECRETS');
  });

  it('refuses a file with no secret in it', () => {
    expect(codeOf(() => readSrsSecrets(file('empty', '\n \n')))).toBe('CFG_SRS_SECRETS');
  });

  it('refuses a file everyone can read', () => {
    expect(codeOf(() => readSrsSecrets(file('open', 'a-good-long-secret\n', 0o644)))).toBe('CFG_SRS_SECRETS');
  });

  it('refuses a secret too short to be secret', () => {
    expect(codeOf(() => readSrsSecrets(file('short', 'good-long-secret\nabc\n')))).toBe('CFG_SRS_SECRETS');
  });

  it('refuses a folder in place of the file', () => {
    expect(codeOf(() => readSrsSecrets(dir))).toBe('CFG_SRS_SECRETS');
  });

  it("says that postseal's user may not read postsrsd's root-owned secret, rather than to create it", () => {
    const open = mkdtempSync(path.join(tmpdir(), 'srs-secrets-root-'));
    chmodSync(open, 0o755);
    const secret = path.join(open, 'postsrsd.secret');
    writeFileSync(secret, 'a-good-long-secret\n', { mode: 0o600 });
    // Read as nobody (the tests run as root, who reads every file), by the built module.
    const script = `try { require(${JSON.stringify(path.join(root, 'dist/lib/srs/secrets.js'))}).readSrsSecrets(${JSON.stringify(secret)}) } catch (e) { process.stdout.write(e.code + ' ' + e.message) }`;
    const out = execFileSync('runuser', ['-u', 'nobody', '--', nodeBin, '-e', script], { encoding: 'utf8' });
    expect(out).toMatch(/^CFG_SRS_SECRETS .*cannot be read \(EACCES\); postseal runs as uid 65534, which may not read it: chown it/);
  });
});
