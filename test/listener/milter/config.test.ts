/**
 * What the configuration loader says about milter listeners: no STARTTLS, no forward checks
 * (the MTA keeps the message), and the banks of macro rules loaded like the others.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { checkForwardLoops } from '../../../src/config/forward-loops';
import { isPostsealError } from '../../../src/errors';
import { loadConfig } from '../../../src/setup';

function configWith(main: Record<string, unknown>, banks: Record<string, Record<string, unknown>> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-milter-config-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), YAML.stringify({ forward: { host: '127.0.0.1', port: 10025 } }));
  for (const [name, body] of Object.entries(banks)) writeFileSync(path.join(dir, 'banks', `${name}.yaml`), YAML.stringify(body));
  writeFileSync(path.join(dir, 'postseal.yaml'), YAML.stringify({ bankDir: 'banks', ...main }));
  return path.join(dir, 'postseal.yaml');
}

/** What loading the file throws (undefined when it loads). */
function loadError(file: string): unknown {
  try {
    loadConfig(file);
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('milter listener configuration', () => {
  it('refuses STARTTLS on a milter listener with CFG_INCONSISTENT naming the pointer', () => {
    const file = configWith({ listeners: [{ port: 10030, bank: 'default', protocol: 'milter', tls: { certFile: 'c.pem', keyFile: 'k.pem' } }] });
    const err = loadError(file);
    expect(isPostsealError(err, 'CFG_INCONSISTENT')).toBe(true);
    expect((err as Error).message).toContain('/listeners/0/tls');
  });

  it.each([
    ['the same address', '127.0.0.1'],
    ['the wildcard address', '0.0.0.0'],
    ['the IPv6 wildcard, which Node binds for IPv4 too', '::'],
  ])('refuses a second listener on the port of a milter listener (%s) with CFG_INCONSISTENT naming both', (_what, address) => {
    const file = configWith({
      listeners: [
        { port: 10030, bank: 'default', protocol: 'milter' },
        { address, port: 10030, bank: 'default', protocol: 'milter' },
      ],
    });
    const err = loadError(file);
    expect(isPostsealError(err, 'CFG_INCONSISTENT')).toBe(true);
    expect((err as Error).message).toContain(`/listeners/1: port 10030 on ${address} is already /listeners/0's`);
  });

  it('accepts listeners on one port with different addresses, and several on port 0', () => {
    const file = configWith({
      listeners: [
        { port: 10030, bank: 'default', protocol: 'milter' },
        { address: '127.0.0.2', port: 10030, bank: 'default', protocol: 'milter' },
        { port: 0, bank: 'default', protocol: 'milter' },
        { port: 0, bank: 'default' },
      ],
    });
    expect(loadConfig(file).main.listeners).toHaveLength(4);
  });

  it('accepts the IPv4 wildcard and the IPv6 loopback on one port, which Linux binds both', () => {
    const file = configWith({
      listeners: [
        { address: '0.0.0.0', port: 10030, bank: 'default', protocol: 'milter' },
        { address: '::1', port: 10030, bank: 'default', protocol: 'milter' },
      ],
    });
    expect(loadConfig(file).main.listeners).toHaveLength(2);
  });

  it('accepts a milter listener on a bank that forwards over LMTP, which only SMTP listeners could not pass on', () => {
    const file = configWith({ listeners: [{ port: 10030, bank: 'default', protocol: 'milter' }] }, { default: { forward: { host: '127.0.0.1', port: 24, protocol: 'lmtp' } } });
    expect(loadConfig(file).main.listeners[0]).toMatchObject({ protocol: 'milter', address: '127.0.0.1', milter: { failureAction: 'tempfail' } });
  });

  it('loads the bank a macro rule names, and refuses one without a file', () => {
    const ok = configWith(
      { listeners: [{ port: 10030, bank: 'default', protocol: 'milter' }], bankRules: { macros: [{ macro: '{auth_authen}', bank: 'SUBMIT' }] } },
      { SUBMIT: {} },
    );
    expect([...loadConfig(ok).banks.keys()]).toContain('SUBMIT');
    const missing = configWith({ listeners: [{ port: 10030, bank: 'default', protocol: 'milter' }], bankRules: { macros: [{ macro: '{auth_authen}', bank: 'NOPE' }] } });
    expect(() => loadConfig(missing)).toThrow(/bank "NOPE" has no file/);
  });

  it('refuses a macro name that Postfix would not send', () => {
    const file = configWith({ listeners: [{ port: 10030, bank: 'default', protocol: 'milter' }], bankRules: { macros: [{ macro: 'daemon_name', bank: 'default' }] } });
    expect(() => loadConfig(file)).toThrow(/macro/);
  });

  it('warns that a milter listener other hosts can reach lets them have mail checked or signed', async () => {
    const file = configWith({ listeners: [{ address: '0.0.0.0', port: 10030, bank: 'default', protocol: 'milter' }] });
    const warnings = await checkForwardLoops(loadConfig(file));
    expect(warnings).toEqual([expect.objectContaining({ code: 'CFG_LISTENER_NOT_LOOPBACK' })]);
    expect(warnings[0].message).toContain('accepts milter connections from other hosts');
  });
});
