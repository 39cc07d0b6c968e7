/**
 * A reload the policy service refuses, through the whole daemon (main.ts): nothing of the new
 * configuration may apply, not even to the services that reload before the policy service.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import YAML from 'yaml';
import { isPostsealError } from '../../../src/errors';
import { loadConfig } from '../../../src/setup';
import { startHarness } from '../../helpers/postseal';
import { startSink } from '../../helpers/sink';

jest.setTimeout(30000);

function greeting(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('data', (d) => {
      s.destroy();
      resolve(d.toString());
    });
    s.once('error', reject);
  });
}

it('refuses a reload whose greylisting retry window is not longer than its delay before any service takes the new configuration', async () => {
  const sink = await startSink();
  const h = await startHarness({ forwardPort: sink.port, main: { services: { policy: { enabled: true, port: 0 } } } });
  try {
    expect(await greeting(h.app.portOf('default'))).toMatch(/postseal content filter/);
    // The new configuration changes the SMTP greeting too, and makes greylisting impossible.
    const bank = path.join(h.dir, 'banks', 'default.yaml');
    writeFileSync(bank, YAML.stringify({ ...YAML.parse(readFileSync(bank, 'utf8')), greetingBanner: 'new banner' }));
    const file = path.join(h.dir, 'postseal.yaml');
    const main = YAML.parse(readFileSync(file, 'utf8'));
    main.services.policy.greylist = { delaySec: 300, retryWindowSec: 300 };
    writeFileSync(file, YAML.stringify(main));
    let error: unknown;
    await h.app.reload(loadConfig(file)).catch((err) => {
      error = err;
    });
    expect(isPostsealError(error, 'CFG_INCONSISTENT')).toBe(true);
    expect((error as Error).message).toMatch(/retryWindowSec \(300\) is not longer than delaySec \(300\)/);
    // The SMTP listener (reloaded before the policy service) still runs the old configuration.
    expect(await greeting(h.app.portOf('default'))).toMatch(/postseal content filter/);
  } finally {
    await h.close();
    await sink.close();
  }
});
