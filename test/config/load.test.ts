/**
 * config/load.ts: listeners' banks and addresses are checked at load, so that `config check`
 * refuses what start-up could not run, naming the main file, the listener's pointer and the fix.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../src/setup';
import { configFolder, loadError } from '../helpers/config-folder';

/** `listeners` appended to a valid main file, and a bank file `forward: { port: 10027 }` for each of `banks`. */
const configWith = (listeners: string, banks: readonly string[] = []) => configFolder(listeners, '', Object.fromEntries(banks.map((b) => [b, 'forward: { port: 10027 }\n'])));

describe('loading listeners', () => {
  it('a bank named in another case than its file is refused with the pointer and the file that exists', () => {
    const { dir, file } = configWith('  - { port: 0, bank: originating }\n', ['ORIGINATING']);
    const e = loadError(file);
    expect(e.code).toBe('CFG_BANK_MISSING');
    expect(e.message).toBe(
      `${file}: /listeners/1/bank: bank "originating" has no file ${path.join(dir, 'banks', 'originating.yaml')}; bank names are case-sensitive: write "ORIGINATING" (the file ORIGINATING.yaml), or rename the file`,
    );
  });

  it('a bank of a bankRules rule that has no file is named by the rule pointer', () => {
    const { file } = configWith('bankRules:\n  clientNetworks: [{ networks: [192.0.2.0/24], bank: MYNETS }]\n');
    expect(loadError(file).message).toMatch(new RegExp(`^${file}: /bankRules/clientNetworks/0/bank: bank "MYNETS" has no file .*; create it`));
  });

  it('an OpenDKIM socket as a milter listener address is refused at load with the TCP form', () => {
    const { file } = configWith('  - { address: "inet:8891@localhost", port: 8891, bank: default, protocol: milter }\n');
    const e = loadError(file);
    expect(e.code).toBe('CFG_SCHEMA_INVALID');
    expect(e.message).toMatch(new RegExp(`^${file}: /listeners/1/address: "inet:8891@localhost" is not an address to listen on; .*write address: 127\\.0\\.0\\.1 and port: 8891`));
  });

  it('a unix socket path as a listener address is refused at load', () => {
    expect(loadError(configWith('  - { address: "local:/run/opendkim/opendkim.sock", port: 0, bank: default, protocol: milter }\n').file).code).toBe('CFG_SCHEMA_INVALID');
  });

  it('accepts IPv4, IPv6 and host-name addresses, and the empty address (every address, as Node binds it)', () => {
    const { file } = configWith(
      '  - { address: "::1", port: 0, bank: default }\n  - { address: localhost, port: 0, bank: default }\n  - { address: "", port: 0, bank: default }\n',
    );
    expect(loadConfig(file).main.listeners.map((l) => l.address)).toEqual(['127.0.0.1', '::1', 'localhost', '']);
  });

  it.each(['[127.0.0.1]', '127.0.0.1:10025'])('a forward host written the amavisd/Postfix way (%s), which would defer every message, is refused at load', (host) => {
    const { dir, file } = configWith('');
    writeFileSync(path.join(dir, 'banks', 'default.yaml'), `forward: { host: "${host}", port: 10025 }\n`);
    const e = loadError(file);
    expect(e.code).toBe('CFG_SCHEMA_INVALID');
    expect(e.message).toBe(
      `${path.join(dir, 'banks', 'default.yaml')}: /forward/host: "${host}" is not a host name or address (amavisd's $forward_method and Postfix write smtp:[127.0.0.1]:10025); write host: 127.0.0.1 and port: 10025 apart`,
    );
  });

  it('accepts forward and listener host names with an underscore (Docker names containers project_service_1) and an IPv6 forward address', () => {
    const { dir, file } = configWith('  - { address: mail_postseal_1, port: 0, bank: default }\n');
    writeFileSync(path.join(dir, 'banks', 'default.yaml'), 'forward: { host: mail_postfix_1, port: 10025 }\nnotify: { host: "::1", port: 10027 }\n');
    const config = loadConfig(file);
    expect(config.banks.get('default')?.forward.host).toBe('mail_postfix_1');
    expect(config.main.listeners[1].address).toBe('mail_postseal_1');
  });

  it('a bank whose listed stage bounces and that has no notify target is refused, rather than deferring that mail until Postfix gives up', () => {
    const { dir, file } = configWith('');
    const bank = path.join(dir, 'banks', 'default.yaml');
    writeFileSync(bank, 'forward: { host: 127.0.0.1, port: 10025 }\nstages: [banned]\nbanned: { destiny: bounce }\n');
    const e = loadError(file);
    expect(e.code).toBe('CFG_INCONSISTENT');
    expect(e.message).toMatch(new RegExp(`^${bank}: /banned/destiny: bounce sends a DSN through the bank's notify target, and this bank has none`));
    writeFileSync(bank, 'forward: { host: 127.0.0.1, port: 10025 }\nstages: [loop-guard]\nbanned: { destiny: bounce }\n');
    expect(loadConfig(file).banks.get('default')?.notify).toBeUndefined();
  });
});

describe('a bank folder that is not there', () => {
  it('says that default.yaml does not exist, naming /bankDir and the fix, not only the key it lacks', () => {
    // The shipped examples/systemd/postseal.yaml checked where it lies, before the install copied policy-banks/ next to it.
    const { file } = configFolder('');
    writeFileSync(file, 'bankDir: policy-banks\nlisteners:\n  - { port: 0, bank: default }\n');
    const e = loadError(file);
    expect(e.code).toBe('CFG_SCHEMA_INVALID');
    const missing = path.join(path.dirname(file), 'policy-banks', 'default.yaml');
    expect(e.message).toContain(`${missing}: /: missing required key "forward"`);
    expect(e.message).toContain(
      `${file}: /bankDir: ${missing} does not exist (nor the folder ${path.dirname(missing)}), so no bank has its settings: copy the shipped policy-banks/ there`,
    );
  });
});
