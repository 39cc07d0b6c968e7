import { chmodSync, chownSync, lstatSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../src/setup';
import { planActivation, writeKeyStates } from '../../src/keys/activate';
import { edKey, rsaKey } from '../helpers/dkim-verifiers';
import { writeKeyConfig } from '../helpers/key-config';

/** A key table as a postmaster writes it: comments, one key in flow style. */
function keyTableText(): string {
  return `# example.com keys; rotated every year
old: # the 2025 key
  domain: example.com
  selector: rsa2025
  keyFile: ${rsaKey.file}
  algorithm: rsa-sha256
new:
  domain: example.com
  selector: rsa2026
  keyFile: ${rsaKey.file}
  algorithm: rsa-sha256
  state: staged # published 2026-01-02
ed: { domain: example.com, selector: ed1, keyFile: ${edKey.file}, algorithm: ed25519-sha256 }
`;
}

function setUp(rules: { author: string; keys: string[] }[]) {
  const cfg = writeKeyConfig({ keys: {}, rules });
  writeFileSync(cfg.keyTableFile, keyTableText());
  const store = loadConfig(cfg.config).keys;
  return { cfg, store, key: (name: string) => store.keys.find((k) => k.name === name)! };
}

describe('key activation', () => {
  it('activates the key, retires the active key of the same domain and algorithm only, and keeps the comments', () => {
    const { cfg, store, key } = setUp([{ author: 'example.com', keys: ['old', 'new', 'ed'] }]);
    expect(store.forAuthor('example.com').map((k) => k.name)).toEqual(['old', 'ed']);
    const plan = planActivation(store, key('new'));
    expect(plan.problems).toEqual([]);
    expect(plan.changes.map((c) => `${c.key.name}:${c.to}`)).toEqual(['new:active', 'old:retiring']);
    writeKeyStates(cfg.keyTableFile, plan.changes);
    const text = readFileSync(cfg.keyTableFile, 'utf8');
    for (const comment of ['# example.com keys; rotated every year', '# the 2025 key', 'state: active # published 2026-01-02']) expect(text).toContain(comment);
    expect(text).toMatch(/^ed: \{ domain: example\.com, selector: ed1, .* \}$/m);
    const after = loadConfig(cfg.config).keys;
    expect(after.forAuthor('example.com').map((k) => `${k.name}:${k.state}`)).toEqual(['new:active', 'ed:active']);
    expect(after.keys.find((k) => k.name === 'old')!.state).toBe('retiring');
  });

  it('refuses to leave a rule without an active key, and a key that no rule names', () => {
    const { store, key } = setUp([
      { author: 'example.com', keys: ['old', 'new'] },
      { author: '*.example.com', keys: ['old'] },
    ]);
    expect(planActivation(store, key('new')).problems).toEqual([expect.stringContaining('/1/keys: the rule for *.example.com would have no active key left; add "new" to it')]);
    const alone = setUp([{ author: 'example.com', keys: ['old'] }]);
    expect(planActivation(alone.store, alone.key('new')).problems).toEqual([
      expect.stringContaining('no rule names "new"'),
      expect.stringContaining('/0/keys: the rule for example.com would have no active key left'),
    ]);
  });

  it("writing the new states keeps the key table's owner and mode and does not follow a symlink at the old temp-file name", () => {
    const { cfg, store, key } = setUp([{ author: 'example.com', keys: ['old', 'new', 'ed'] }]);
    // Tests run as root: the table belongs to the daemon's user, nobody here.
    chownSync(cfg.keyTableFile, 65534, 65534);
    chmodSync(cfg.keyTableFile, 0o640);
    const victim = path.join(cfg.dir, 'victim');
    writeFileSync(victim, 'untouched\n');
    symlinkSync(victim, `${cfg.keyTableFile}.${process.pid}.tmp`);
    writeKeyStates(cfg.keyTableFile, planActivation(store, key('new')).changes);
    const st = lstatSync(cfg.keyTableFile);
    expect([st.isFile(), st.uid, st.gid, st.mode & 0o777]).toEqual([true, 65534, 65534, 0o640]);
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
    expect(loadConfig(cfg.config).keys.keys.find((k) => k.name === 'new')!.state).toBe('active');
  });
});
