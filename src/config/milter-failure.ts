/**
 * A milter listener with `milter.failureAction: accept` lets a message through unchanged when
 * a stage fails or times out. On a bank with content checks that is a way past them: a sender
 * can make a scan slow (an archive that takes long to unpack, a message clamd scans in many
 * pieces), and a banned or virus stage that runs past timeouts.stageTimeoutMs, or a message
 * past its deadline, is then delivered unscanned, without X-Virus-Scanned or an
 * X-Postseal-Alert, where the content-filter path and failureAction tempfail answer 451.
 * `onScannerFailure` stays the bank's own choice (a scanner that is down or slower than its
 * timeoutMs); this is the failure of the stage itself.
 *
 * Warns (CFG_MILTER_ACCEPT_UNCHECKED) per such listener, naming the banks with content checks
 * it can reach: its own, and those its bankRules can choose (macros first, then client
 * networks and senders whose listenerBanks allow it). Reads: listeners, bankRules, each
 * bank's stages.
 */
import type { ConfigWarning } from '../errors';
import type { ConfigFiles } from './load';

const CONTENT_STAGES = ['banned', 'virus', 'spam'];

export function milterAcceptWarnings(files: ConfigFiles): ConfigWarning[] {
  const rules = files.main.bankRules;
  const applies = (listenerBanks: readonly string[] | undefined, banks: ReadonlySet<string>) => !listenerBanks?.length || listenerBanks.some((b) => banks.has(b));
  const warnings: ConfigWarning[] = [];
  files.main.listeners.forEach((l, i) => {
    if (l.protocol !== 'milter' || l.milter?.failureAction !== 'accept') return;
    const reached = new Set([l.bank]);
    for (const r of rules.macros) if (applies(r.listenerBanks, new Set([l.bank]))) reached.add(r.bank);
    for (const r of [...rules.clientNetworks, ...rules.senders]) if (applies(r.listenerBanks, reached)) reached.add(r.bank);
    const checked = [...reached].filter((b) => files.banks.get(b)?.stages.some((s) => CONTENT_STAGES.includes(s)));
    if (!checked.length) return;
    warnings.push({
      code: 'CFG_MILTER_ACCEPT_UNCHECKED',
      message: `${files.file}: /listeners/${i}/milter/failureAction: accept lets a message through unchecked when a stage fails or times out, and bank ${checked.join(', ')} checks content (${CONTENT_STAGES.join(', ')}): a sender who makes a scan run past timeouts.stageTimeoutMs gets banned files or viruses delivered unscanned; use tempfail (451, the client retries)`,
    });
  });
  return warnings;
}
