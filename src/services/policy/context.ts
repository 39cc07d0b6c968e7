/**
 * The policy service's configuration checked and made ready (service.ts uses it at start and
 * reload, main.ts before any service reloads, `postseal config check`): the networks, the
 * greylisting timings and the whitelist files (read and parsed).
 *
 * Fails with CFG_POLICY_WHITELIST (a file unreadable, a line it cannot read) and
 * CFG_INCONSISTENT (retryWindowSec not longer than delaySec).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseNetworks } from '../../config/networks';
import { PostsealError } from '../../errors';
import { parseClientWhitelist, parseRecipientWhitelist, type WhitelistSource } from '../../lib/greylist';
import type { LoadedConfig } from '../../setup';
import type { PolicyContext } from './decide';

/**
 * What start-up would refuse, for `postseal config check`: the networks and the whitelist files
 * (read and parsed). Throws CFG_POLICY_WHITELIST; nothing when the service is off.
 */
export function checkPolicyConfig(config: LoadedConfig): void {
  if (config.main.services.policy.enabled) buildContext(config);
}

export function buildContext(config: LoadedConfig): PolicyContext {
  const settings = config.main.services.policy;
  const base = path.dirname(config.file);
  const read = (files: readonly string[], pointer: string): WhitelistSource[] =>
    files.map((f, i) => {
      const file = path.resolve(base, f);
      try {
        return { name: file, text: readFileSync(file, 'latin1') };
      } catch (err) {
        throw new PostsealError('CFG_POLICY_WHITELIST', `${config.file}: ${pointer}/${i}: cannot read ${file}: ${(err as Error).message}`, { cause: err });
      }
    });
  const g = settings.greylist;
  const wrap = <T>(pointer: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof PostsealError) throw err;
      throw new PostsealError('CFG_POLICY_WHITELIST', `${config.file}: ${pointer}: ${(err as Error).message}`, { cause: err });
    }
  };
  const p = '/services/policy';
  // A retry passes only between delaySec and retryWindowSec after the first attempt: with no
  // such time every retry starts over and the mail is deferred until the sender bounces it.
  if (settings.enabled && g.enabled && g.retryWindowSec <= g.delaySec) {
    throw new PostsealError(
      'CFG_INCONSISTENT',
      `${config.file}: ${p}/greylist/retryWindowSec (${g.retryWindowSec}) is not longer than delaySec (${g.delaySec}): no retry could pass greylisting; make the window hours (postgrey: 2 days)`,
    );
  }
  return {
    settings,
    hostname: config.hostname,
    skipNetworks: wrap(`${p}/skipNetworks`, () => parseNetworks(settings.skipNetworks)),
    spfSkipNetworks: wrap(`${p}/spf/skipNetworks`, () => parseNetworks(settings.spf.skipNetworks)),
    lists: {
      clients: wrap(`${p}/greylist/whitelistClientFiles`, () => parseClientWhitelist(read(g.whitelistClientFiles, `${p}/greylist/whitelistClientFiles`))),
      recipients: wrap(`${p}/greylist/whitelistRecipientFiles`, () =>
        parseRecipientWhitelist([
          { name: `${p}/greylist/skipRecipients`, text: g.skipRecipients.join('\n') },
          ...read(g.whitelistRecipientFiles, `${p}/greylist/whitelistRecipientFiles`),
        ]),
      ),
    },
  };
}
