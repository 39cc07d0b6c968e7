import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runCli } from '../helpers/cli';

/** A configuration with a client-network rule and a sender rule on the default listener. */
function rulesConfig(): { file: string; message: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'postseal-chain-'));
  mkdirSync(path.join(dir, 'banks'));
  writeFileSync(path.join(dir, 'banks', 'default.yaml'), 'forward: { host: 127.0.0.1, port: 10025 }\n');
  writeFileSync(path.join(dir, 'banks', 'MYNETS.yaml'), 'originating: true\nmaxRecipients: 7\n');
  writeFileSync(path.join(dir, 'banks', 'BULK.yaml'), 'maxRecipients: 3\n');
  writeFileSync(
    path.join(dir, 'postseal.yaml'),
    [
      'bankDir: banks',
      'listeners:',
      '  - { port: 10024, bank: default }',
      'bankRules:',
      '  clientNetworks:',
      '    - { networks: [192.0.2.0/24, "2001:db8::/32"], bank: MYNETS }',
      '  senders:',
      '    - { senders: ["*.lists.example"], bank: BULK, listenerBanks: [default] }',
      '',
    ].join('\n'),
  );
  const message = path.join(dir, 'msg.eml');
  writeFileSync(message, 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n');
  return { file: path.join(dir, 'postseal.yaml'), message };
}

describe('the bank chain in the command-line tools', () => {
  const { file, message } = rulesConfig();

  it('config print --client-ip prints the chain from the listener port to the client network bank, then that bank', () => {
    const r = runCli(['config', 'print', 'default', '--client-ip', '2001:db8::7', '--config', file]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('# bank chain (client 2001:db8::7, sender <>): listener port 10024 -> default; clientNetworks[0] 2001:db8::/32 -> MYNETS;');
    expect(r.stdout).toMatch(/^# bank MYNETS /m);
    expect(r.stdout).toMatch(/^maxRecipients: 7$/m);
  });

  it('config print --mail-from after a network rule ends on the sender bank', () => {
    const r = runCli(['config', 'print', 'default', '--client-ip', '192.0.2.1', '--mail-from', 'owner@x.lists.example', '--config', file]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('clientNetworks[0] 192.0.2.0/24 -> MYNETS; senders[0] *.lists.example -> BULK;');
    expect(r.stdout).toMatch(/^maxRecipients: 3$/m);
  });

  it('config print refuses a client address that is not one', () => {
    const r = runCli(['config', 'print', 'default', '--client-ip', 'mx.example', '--config', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--client-ip "mx.example" is not an IPv4 or IPv6 address');
  });

  it('explain runs the chain from --bank and explains the bank it ends on', () => {
    const r = runCli(['explain', '--bank', 'default', '--client-ip', '192.0.2.9', '--config', file, message]);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe(
      'bank chain (client 192.0.2.9, sender <>): listener port 10024 -> default; clientNetworks[0] 192.0.2.0/24 -> MYNETS; a valid DKIM signer may switch later (dkimVerify.signerBanks)',
    );
    expect(lines[1]).toMatch(/^bank MYNETS: originating, /);
  });

  it('explain from a client outside the networks stays on the port bank', () => {
    const r = runCli(['explain', '--bank', 'default', '--client-ip', '203.0.113.1', '--config', file, message]);
    expect(r.stdout.split('\n').slice(0, 2)).toEqual([expect.stringContaining('listener port 10024 -> default; a valid'), expect.stringMatching(/^bank default: not originating/)]);
    expect(r.status).toBe(1);
  });
});
