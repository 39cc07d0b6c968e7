/**
 * Whether the scanners a bank's spam stage asks are alive: the start-up and reload warning
 * (setup.ts checkConfig) and GET /readyz's check, against Debian's real spamd and rspamd and a
 * closed port.
 */
import net, { type AddressInfo } from 'node:net';
import { createReadiness } from '../../../src/services/metrics/readiness';
import { checkConfig, loadConfig } from '../../../src/setup';
import { writeConfig } from '../../helpers/metrics';
import { startHarness } from '../../helpers/postseal';
import { freePort } from '../../helpers/redis-server';
import { startRspamd, type Rspamd } from '../../helpers/rspamd';
import { startSpamd, type Spamd } from '../../helpers/spamd';

let spamd: Spamd;
let rspamd: Rspamd;
let forward: net.Server;
let forwardPort: number;

beforeAll(async () => {
  [spamd, rspamd] = await Promise.all([startSpamd(), startRspamd()]);
  forward = net.createServer((s) => s.end());
  await new Promise<void>((r) => forward.listen(0, '127.0.0.1', () => r()));
  forwardPort = (forward.address() as AddressInfo).port;
}, 30000);

afterAll(async () => {
  await new Promise((r) => forward.close(r));
  await Promise.all([spamd?.stop(), rspamd?.stop()]);
});

function config(scanners: { spamdPort?: number; rspamdPort?: number }, extra: Record<string, Record<string, unknown>> = {}) {
  const spam = {
    spamd: { enabled: true, host: '127.0.0.1', port: scanners.spamdPort ?? spamd.port },
    rspamd: { enabled: true, host: '127.0.0.1', port: scanners.rspamdPort ?? rspamd.port },
  };
  return loadConfig(writeConfig({ default: { forward: { host: '127.0.0.1', port: forwardPort }, stages: ['spam', 'spam-tag'], spam }, ...extra }));
}

describe('the spam scanner probe', () => {
  it('finds both scanners alive: ready, and no warning at start-up', async () => {
    const c = config({});
    expect(await createReadiness({ listenersDown: () => null, config: () => c }).check()).toBeNull();
    expect((await checkConfig(c)).filter((w) => w.code === 'CFG_SPAM_SCANNER_NOT_ANSWERING')).toEqual([]);
  });

  it('makes /readyz name the bank and the spamd that does not answer', async () => {
    const closed = await freePort();
    const c = config({ spamdPort: closed });
    expect(await createReadiness({ listenersDown: () => null, config: () => c }).check()).toMatch(
      new RegExp(`^bank default: spamd 127\\.0\\.0\\.1:${closed} did not answer its ping \\(spamd: 127\\.0\\.0\\.1:${closed}: ECONNREFUSED\\)$`),
    );
  });

  it('warns at start-up, naming the file, about an rspamd that does not answer, once for the banks sharing it', async () => {
    const closed = await freePort();
    const c = config({ rspamdPort: closed }, { OTHER: { stages: ['spam', 'spam-tag'] } });
    const warnings = (await checkConfig(c)).filter((w) => w.code === 'CFG_SPAM_SCANNER_NOT_ANSWERING');
    expect(warnings).toEqual([
      { code: 'CFG_SPAM_SCANNER_NOT_ANSWERING', message: expect.stringContaining(`${c.file}: bank default, OTHER: rspamd 127.0.0.1:${closed} did not answer its ping`) },
    ]);
  });

  it('names the bank key and where spamd is configured to listen in its start-up warning', async () => {
    const closed = await freePort();
    const warnings = (await checkConfig(config({ spamdPort: closed }))).filter((w) => w.code === 'CFG_SPAM_SCANNER_NOT_ANSWERING');
    expect(warnings.map((w) => w.message)).toEqual([
      expect.stringMatching(/until it answers: check \/spam\/spamd \(socket, or host and port\) against spamd's --listen or --socketpath .*systemctl status spamd/),
    ]);
  });

  it('does not probe for banks without the spam stage', async () => {
    const closed = await freePort();
    const c = loadConfig(writeConfig({ default: { forward: { host: '127.0.0.1', port: forwardPort }, spam: { spamd: { enabled: true, port: closed } } } }));
    expect(await createReadiness({ listenersDown: () => null, config: () => c }).check()).toBeNull();
  });

  it('starts postseal with a warning log line, not a refusal, when a scanner does not answer', async () => {
    const closed = await freePort();
    const h = await startHarness({ forwardPort, banks: { default: { stages: ['spam', 'spam-tag'], spam: { spamd: { enabled: true, host: '127.0.0.1', port: closed } } } } });
    try {
      expect(h.logs).toContainEqual(
        expect.objectContaining({ code: 'CFG_SPAM_SCANNER_NOT_ANSWERING', msg: expect.stringContaining(`spamd 127.0.0.1:${closed} did not answer its ping`) }),
      );
      expect(h.logs).toContainEqual(expect.objectContaining({ msg: 'listening', bank: 'default' }));
    } finally {
      await h.close();
    }
  });
});
