/**
 * One policy request -> one action (SMTPD_POLICY_README "Policy server response"): the skips
 * (SASL, skipNetworks), then SPF (spf-policy.ts), then greylisting (lib/greylist), worst first:
 * an SPF reject, then a deferral, then a PREPEND, else DUNNO. Only smtpd_access_policy requests
 * at RCPT are decided; at DATA (smtpd_data_restrictions) a X-Greylist field that could not be
 * prepended at RCPT (Postfix takes one action per answer, and Received-SPF went first) is.
 *
 * Per message (Postfix's `instance` attribute), remembered per connection: the SPF result
 * (checked once, at the first recipient), whether Received-SPF was prepended, and a pending
 * X-Greylist. Postfix asks about one message's recipients on one connection, in order.
 *
 * Failures: anything thrown here (store down) is turned into DEFER_IF_PERMIT by service.ts. A
 * greylisting pass whose state could not be stored (a store whose disk is full) stays a pass,
 * and the store's error goes to `storeWriteFailed` for the log.
 */
import type { MainConfig } from '../../config/main-schema';
import type { NetworkList } from '../../config/networks';
import type { DnsResolver } from '../../lib/dns';
import { greylist, type GreylistLists } from '../../lib/greylist';
import { replies } from '../../smtp/replies';
import type { Store } from '../../store/store';
import type { PolicyRequest } from './protocol';
import { spfPolicy, type SpfDecision } from './spf-policy';

export type PolicySettings = MainConfig['services']['policy'];

export interface PolicyContext {
  readonly settings: PolicySettings;
  readonly skipNetworks: NetworkList;
  readonly spfSkipNetworks: NetworkList;
  readonly lists: GreylistLists;
  readonly hostname: string;
}

export interface PolicyDeps {
  readonly store: Store;
  readonly resolver: DnsResolver;
  /** Milliseconds, like Date.now. */
  readonly now: () => number;
}

/** What one connection remembers about the message in progress. */
export interface MessageMemory {
  instance?: string;
  spf?: SpfDecision;
  spfPrepended?: boolean;
  pendingHeader?: string;
}

export async function decide(
  ctx: PolicyContext,
  deps: PolicyDeps,
  req: PolicyRequest,
  memory: MessageMemory,
  signal: AbortSignal,
  storeWriteFailed?: (err: unknown) => void,
): Promise<string> {
  if ((req.get('request') ?? '') !== 'smtpd_access_policy') return 'DUNNO';
  const instance = req.get('instance') ?? '';
  if (memory.instance !== instance || !instance) {
    for (const k of Object.keys(memory)) delete memory[k as keyof MessageMemory];
    memory.instance = instance;
  }
  const state = (req.get('protocol_state') ?? 'RCPT').toUpperCase();
  if (state !== 'RCPT') return takePending(memory) ?? 'DUNNO';

  const s = ctx.settings;
  const client = (req.get('client_address') ?? '').replace(/^ipv6:/i, '');
  if (s.skipSasl && req.get('sasl_username')) return 'DUNNO';
  if (!client || ctx.skipNetworks.contains(client)) return 'DUNNO';
  const sender = req.get('sender') ?? '';
  const recipient = req.get('recipient') ?? '';

  let prepend: string | undefined;
  if (s.spf.enabled && !ctx.spfSkipNetworks.contains(client)) {
    memory.spf ??= await spfPolicy(s.spf, { clientAddress: client, helo: req.get('helo_name') ?? '', sender }, { resolver: deps.resolver, receiver: ctx.hostname, signal });
    const spf = memory.spf;
    if (spf.kind !== 'accept') return spf.action;
    if (spf.header && !memory.spfPrepended) prepend = spf.header;
  }

  // No recipient (not Postfix at RCPT): no triplet to judge or store; postgrey answers DUNNO too.
  if (s.greylist.enabled && recipient && !skipsGreylist(ctx, memory, sender)) {
    const g = s.greylist;
    const nowSec = Math.floor(deps.now() / 1000);
    const outcome = await greylist(deps.store, g, ctx.lists, { clientAddress: client, clientName: req.get('client_name') ?? 'unknown', sender, recipient }, nowSec);
    if (outcome.unsaved !== undefined) storeWriteFailed?.(outcome.unsaved);
    if (outcome.action === 'greylist') {
      const r = replies.policyGreylisted;
      return `DEFER_IF_PERMIT ${r.enhanced} ${greylistText(g.text, outcome.retryInSec, nowSec, recipient)}`;
    }
    if (outcome.reason === 'delayed' && g.header && !memory.pendingHeader) {
      memory.pendingHeader = greylistHeader(g.header, outcome.delayedSec, ctx.hostname, deps.now());
    }
  }
  if (prepend) {
    memory.spfPrepended = true;
    return `PREPEND ${prepend}`;
  }
  return takePending(memory) ?? 'DUNNO';
}

function takePending(memory: MessageMemory): string | undefined {
  const h = memory.pendingHeader;
  if (!h || h === 'sent') return undefined;
  memory.pendingHeader = 'sent';
  return `PREPEND ${h}`;
}

function skipsGreylist(ctx: PolicyContext, memory: MessageMemory, sender: string): boolean {
  const domains = ctx.settings.greylist.skipSpfPassDomains;
  if (!domains.length || memory.spf?.result.result !== 'pass' || memory.spf.result.identity !== 'mailfrom') return false;
  const domain = sender.slice(sender.lastIndexOf('@') + 1).toLowerCase();
  return domains.some((d) => d.toLowerCase() === domain);
}

export function greylistText(template: string, retryInSec: number, nowSec: number, recipient: string): string {
  const after = new Date((nowSec + retryInSec) * 1000)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');
  return template
    .replace(/%s/g, String(retryInSec))
    .replace(/%t/g, after)
    .replace(/%r/g, recipient.slice(recipient.lastIndexOf('@') + 1));
}

function greylistHeader(template: string, delayedSec: number, hostname: string, nowMs: number): string {
  return template.replace(/%t/g, String(delayedSec)).replace(/%h/g, hostname).replace(/%d/g, new Date(nowMs).toUTCString().replace('GMT', '+0000'));
}
