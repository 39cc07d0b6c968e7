/** `postseal config check` reads the policy service's whitelist files, as start-up does. Needs `npm run build`. */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { runCli } from '../../helpers/cli';
import { writePolicyConfig } from '../../helpers/policy';

it('config check fails with CFG_POLICY_WHITELIST naming the file and line of a whitelist entry it cannot read', () => {
  const file = writePolicyConfig({ greylist: { whitelistClientFiles: ['clients'] } }, { spool: { dir: '.' } });
  writeFileSync(path.join(path.dirname(file), 'clients'), 'good.example\n/(broken/\n');
  const r = runCli(['config', 'check', '--config', file]);
  expect(r.status).toBe(1);
  expect(r.stderr).toContain('CFG_POLICY_WHITELIST');
  expect(r.stderr).toContain(`${path.join(path.dirname(file), 'clients')} line 2`);
});

it('config check passes with a whitelist file in postgrey format', () => {
  const file = writePolicyConfig({ greylist: { whitelistClientFiles: ['/etc/postgrey/whitelist_clients'] } }, { spool: { dir: '.' } });
  const r = runCli(['config', 'check', '--config', file]);
  expect([r.status, r.stderr]).toEqual([0, '']);
});
