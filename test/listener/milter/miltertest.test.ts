/**
 * Debian's miltertest (from the OpenDKIM project, its own libmilter-compatible MTA side)
 * drives postseal's milter listener with the Lua scripts in test/fixtures/milter/: signing
 * on the bank chosen by {daemon_name}, the 8-bit body replaced, a forged
 * Authentication-Results deleted, a DMARC reject, two messages on one connection.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from '../../helpers/dns-server';
import { rsaKey, writeSigningFiles, zoneFor } from '../../helpers/dkim-verifiers';
import { startHarness, type Harness } from '../../helpers/postseal';

const exec = promisify(execFile);
const SCRIPTS = path.resolve(__dirname, '../../fixtures/milter');
const key = { ...rsaKey, domain: 'example.org' };

describe('the milter listener driven by miltertest', () => {
  let dns: DnsServer;
  let h: Harness;
  beforeAll(async () => {
    dns = await startDnsServer({ ...zoneFor([key]), '_dmarc.strict.test': { TXT: ['v=DMARC1; p=reject'] } });
    h = await startHarness({
      forwardPort: 9,
      banks: {
        default: { stages: ['loop-guard', 'header-sanity', 'dkim-verify', 'spf', 'dmarc', 'authentication-results'] },
        ORIGINATING: { originating: true, stages: ['loop-guard', 'header-sanity', 'authentication-results', 'seven-bit', 'dkim-sign'] },
      },
      main: {
        listeners: [{ port: 0, bank: 'default', protocol: 'milter' }],
        dns: { servers: [dns.server] },
        authservId: 'filter.test',
        dkimSign: writeSigningFiles([key], [{ author: 'example.org', keys: [key.name] }]),
        bankRules: { macros: [{ macro: '{daemon_name}', values: ['ORIGINATING'], bank: 'ORIGINATING' }] },
      },
    });
  }, 30_000);
  afterAll(async () => {
    await h?.close();
    await dns?.close();
  });

  async function miltertest(script: string): Promise<void> {
    try {
      await exec('miltertest', ['-v', '-D', `port=${h.app.listeners[0].port}`, '-s', path.join(SCRIPTS, script)], { timeout: 20_000 });
    } catch (err) {
      const { stdout, stderr } = err as { stdout?: string; stderr?: string };
      throw new Error(`miltertest ${script} failed:\n${stdout ?? ''}${stderr ?? ''}`);
    }
  }

  it('signs mail whose {daemon_name} picks the ORIGINATING bank, with the signature inserted on top', () => miltertest('sign.lua'));

  it('replaces an 8-bit body with quoted-printable and changes Content-Transfer-Encoding', () => miltertest('eightbit.lua'));

  it('deletes a forged Authentication-Results, then rejects a DMARC failure on the same connection', () => miltertest('inbound.lua'));
});
