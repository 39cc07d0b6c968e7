/**
 * check_host() (RFC 7208 §4): fetch and select the record, parse it whole, evaluate its
 * mechanisms left to right (§5), then redirect= (§6.1), and fetch the exp= explanation
 * (§6.2) only for a fail of the record that was asked about (not of an include).
 *
 * Limits (§4.6.4), shared by the whole evaluation including includes and redirects: at most
 * `dnsMechanisms` terms that query DNS (include, a, mx, ptr, exists, redirect), at most
 * `voidLookups` of their queries answered NXDOMAIN or with no records, at most `mxNames` MX
 * names per mx (more is a permerror) and `ptrNames` PTR names per ptr or %{p} (the rest are
 * ignored). On top, so a hostile record cannot make us work more than the RFC allows even
 * when these are raised: `dnsQueries` queries in all and `depth` nested include/redirect.
 * The AbortSignal stops the evaluation at its next step.
 *
 * DNS errors are results: a temperror of a query the evaluation needs is temperror (§2.6.6),
 * except a failed PTR lookup or an address lookup for a PTR name, which only do not match
 * (§5.5), and the explanation, which is then left out (§6.2).
 */
import type { DnsResolver, DnsResult, RecordData, RecordType } from '../dns';
import { inNetwork, recordBytes, reverseName, type SpfAddress } from './address';
import { expand, EXPLANATION_BOUND, parseMacroString, toQueryName, MacroSyntaxError, type MacroValues } from './macro';
import { isSpfRecord, parseRecord, RecordSyntaxError, type DomainSpec, type Mechanism, type Qualifier, type SpfRecord } from './record';

export type SpfResultCode = 'pass' | 'fail' | 'softfail' | 'neutral' | 'none' | 'temperror' | 'permerror';

export interface SpfLimits {
  dnsMechanisms: number;
  voidLookups: number;
  mxNames: number;
  ptrNames: number;
  dnsQueries: number;
  depth: number;
}

/**
 * The RFC's limits, and caps above what they allow: 1 record + 10 terms × (1 + 10 address
 * lookups) + explanation (1) + %{p} (1 + 10) = 123 queries, and 10 nested records.
 */
export const DEFAULT_LIMITS: SpfLimits = { dnsMechanisms: 10, voidLookups: 2, mxNames: 10, ptrNames: 10, dnsQueries: 150, depth: 10 };

/** An evaluation that ends early; thrown inside, returned as a result by check(). */
export class SpfStop extends Error {
  constructor(
    readonly result: 'permerror' | 'temperror',
    reason: string,
  ) {
    super(reason);
  }
}

export interface EvaluationContext {
  readonly ip: SpfAddress;
  readonly resolver: DnsResolver;
  readonly signal?: AbortSignal;
  readonly limits: SpfLimits;
  /** The letters that do not change with the domain being evaluated. */
  readonly values: Omit<MacroValues, 'd' | 'p'>;
  dnsMechanisms: number;
  voidLookups: number;
  dnsQueries: number;
  validatedNames?: Promise<string[]>;
}

export interface HostResult {
  readonly result: SpfResultCode;
  /** The directive that decided, as published. */
  readonly mechanism?: string;
  readonly explanation?: string;
  readonly reason?: string;
}

const RESULTS: Record<Qualifier, SpfResultCode> = { '+': 'pass', '-': 'fail', '~': 'softfail', '?': 'neutral' };

export async function checkHost(ctx: EvaluationContext, domain: string, depth: number, explain: boolean): Promise<HostResult> {
  if (depth > ctx.limits.depth) throw new SpfStop('permerror', `include/redirect nested deeper than ${ctx.limits.depth}`);
  if (!validName(domain)) return { result: 'none', reason: `"${domain}" is not a domain name` };
  const found = await fetchRecord(ctx, domain);
  if (typeof found === 'string') return { result: 'none', reason: found };
  for (const d of found.directives) {
    if (await matches(ctx, d.mechanism, domain, depth)) {
      const result = RESULTS[d.qualifier];
      const explanation = result === 'fail' && explain && found.exp ? await explanationOrNothing(ctx, found.exp, domain) : undefined;
      return { result, mechanism: d.text, explanation };
    }
  }
  if (found.redirect) {
    countTerm(ctx);
    const target = await targetName(ctx, found.redirect, domain);
    const r = await checkHost(ctx, target, depth + 1, explain);
    // §6.1: a redirect to a domain without a record is a permerror, not none.
    return r.result === 'none' ? { result: 'permerror', reason: `redirect=${target}: ${r.reason ?? 'no SPF record'}` } : r;
  }
  return { result: 'neutral', reason: 'no mechanism matched' };
}

/** §4.4, §4.5: the one record at `domain`, or why there is none. */
async function fetchRecord(ctx: EvaluationContext, domain: string): Promise<SpfRecord | string> {
  const r = await query(ctx, domain, 'TXT');
  if (r.kind === 'temperror') throw new SpfStop('temperror', `DNS error looking up the TXT records of ${domain}: ${r.reason}`);
  if (r.kind !== 'answer') return `${domain} has no TXT records`;
  const records = r.records.map((strings) => strings.join('')).filter(isSpfRecord);
  if (!records.length) return `${domain} has no SPF record`;
  if (records.length > 1) throw new SpfStop('permerror', `${domain} has ${records.length} SPF records`);
  try {
    return parseRecord(records[0]);
  } catch (err) {
    if (err instanceof RecordSyntaxError) throw new SpfStop('permerror', `syntax error in the SPF record of ${domain}: ${err.message}`);
    throw err;
  }
}

async function matches(ctx: EvaluationContext, m: Mechanism, domain: string, depth: number): Promise<boolean> {
  switch (m.kind) {
    case 'all':
      return true;
    case 'ip4':
    case 'ip6':
      return ctx.ip.family === (m.kind === 'ip4' ? 4 : 6) && inNetwork(ctx.ip.bytes, m.network, m.prefix);
    case 'include': {
      countTerm(ctx);
      const target = await targetName(ctx, m.domain, domain);
      const r = await checkHost(ctx, target, depth + 1, false);
      // §5.2: only pass matches; temperror stays temperror, permerror and none are permerror.
      if (r.result === 'temperror') throw new SpfStop('temperror', `include:${target}: ${r.reason ?? 'temperror'}`);
      if (r.result === 'permerror' || r.result === 'none') throw new SpfStop('permerror', `include:${target}: ${r.reason ?? r.result}`);
      return r.result === 'pass';
    }
    case 'exists': {
      countTerm(ctx);
      const target = await targetName(ctx, m.domain, domain);
      return (await mechanismQuery(ctx, target, 'A')).length > 0;
    }
    case 'a': {
      countTerm(ctx);
      const target = m.domain ? await targetName(ctx, m.domain, domain) : domain;
      return (await mechanismQuery(ctx, target, addressType(ctx))).some((a) => inCidr(ctx, a, m.cidr4, m.cidr6));
    }
    case 'mx':
      countTerm(ctx);
      return mxMatches(ctx, m.domain ? await targetName(ctx, m.domain, domain) : domain, m.cidr4, m.cidr6);
    case 'ptr': {
      countTerm(ctx);
      const target = (m.domain ? await targetName(ctx, m.domain, domain) : domain).toLowerCase();
      const names = await validatedNames(ctx, true);
      return names.some((n) => n === target || n.endsWith(`.${target}`));
    }
  }
}

/** §5.4: the MX names (more than `mxNames` is a permerror), then their addresses. */
async function mxMatches(ctx: EvaluationContext, target: string, cidr4: number, cidr6: number): Promise<boolean> {
  const hosts = await mechanismQuery(ctx, target, 'MX');
  if (hosts.length > ctx.limits.mxNames) throw new SpfStop('permerror', `${target} has ${hosts.length} MX records, more than ${ctx.limits.mxNames}`);
  for (const { exchange } of hosts) {
    if (!validName(exchange)) continue; // a null MX (RFC 7505) has no addresses
    const r = await query(ctx, exchange, addressType(ctx));
    if (r.kind === 'temperror') throw new SpfStop('temperror', `DNS error looking up ${exchange}: ${r.reason}`);
    if (r.kind === 'answer' && r.records.some((a) => inCidr(ctx, a, cidr4, cidr6))) return true;
  }
  return false;
}

/**
 * §5.5: the PTR names of the client (the first `ptrNames`) whose addresses include it. With
 * `counted` (the ptr mechanism) an empty PTR answer is a void lookup; for %{p} it is not.
 */
async function validatedNames(ctx: EvaluationContext, counted: boolean): Promise<string[]> {
  const ptr = await query(ctx, reverseName(ctx.ip), 'PTR');
  if (ptr.kind !== 'answer') {
    if (counted && ptr.kind !== 'temperror') countVoid(ctx, reverseName(ctx.ip));
    return [];
  }
  const out: string[] = [];
  for (const name of ptr.records.slice(0, ctx.limits.ptrNames)) {
    const n = name.toLowerCase().replace(/\.$/, '');
    if (!validName(n)) continue;
    const r = await query(ctx, n, addressType(ctx));
    if (r.kind === 'answer' && r.records.some((a) => inCidr(ctx, a, 32, 128))) out.push(n);
  }
  return out;
}

/** A term's own query: temperror stops the evaluation, an empty answer is a void lookup. */
async function mechanismQuery<T extends RecordType>(ctx: EvaluationContext, name: string, type: T): Promise<readonly RecordData[T][]> {
  if (!validName(name)) {
    // §4.8/§5 by analogy to §4.3: a name that cannot be asked for does not exist.
    countVoid(ctx, name);
    return [];
  }
  const r = await query(ctx, name, type);
  if (r.kind === 'temperror') throw new SpfStop('temperror', `DNS error looking up ${type} of ${name}: ${r.reason}`);
  if (r.kind !== 'answer' || !r.records.length) {
    countVoid(ctx, name);
    return [];
  }
  return r.records;
}

async function query<T extends RecordType>(ctx: EvaluationContext, name: string, type: T): Promise<DnsResult<T>> {
  if (ctx.signal?.aborted) throw new SpfStop('temperror', 'evaluation aborted');
  if (++ctx.dnsQueries > ctx.limits.dnsQueries) throw new SpfStop('permerror', `more than ${ctx.limits.dnsQueries} DNS queries`);
  const r = await ctx.resolver.query(name, type, ctx.signal);
  if (ctx.signal?.aborted) throw new SpfStop('temperror', 'evaluation aborted');
  return r;
}

function countTerm(ctx: EvaluationContext): void {
  if (++ctx.dnsMechanisms > ctx.limits.dnsMechanisms) throw new SpfStop('permerror', `more than ${ctx.limits.dnsMechanisms} DNS-querying mechanisms and modifiers`);
}

function countVoid(ctx: EvaluationContext, name: string): void {
  if (++ctx.voidLookups > ctx.limits.voidLookups) throw new SpfStop('permerror', `more than ${ctx.limits.voidLookups} void DNS lookups (the last for ${name})`);
}

function addressType(ctx: EvaluationContext): 'A' | 'AAAA' {
  return ctx.ip.family === 4 ? 'A' : 'AAAA';
}

function inCidr(ctx: EvaluationContext, text: string, cidr4: number, cidr6: number): boolean {
  const bytes = recordBytes(text, ctx.ip.family);
  return !!bytes && inNetwork(ctx.ip.bytes, bytes, ctx.ip.family === 4 ? cidr4 : cidr6);
}

function valuesFor(ctx: EvaluationContext, domain: string): MacroValues {
  return {
    ...ctx.values,
    d: domain,
    p: async () => {
      // §7.3: a validated name, the domain itself or one of its subdomains if there is one.
      ctx.validatedNames ??= validatedNames(ctx, false);
      const names = await ctx.validatedNames;
      const d = domain.toLowerCase();
      return names.find((n) => n === d) ?? names.find((n) => n.endsWith(`.${d}`)) ?? names[0] ?? 'unknown';
    },
  };
}

async function targetName(ctx: EvaluationContext, spec: DomainSpec, domain: string): Promise<string> {
  return toQueryName(await expand(spec.tokens, valuesFor(ctx, domain)));
}

/** §6.2: any failure to get the explanation leaves it out; the lookup is not counted as a void one. */
async function explanationOf(ctx: EvaluationContext, spec: DomainSpec, domain: string): Promise<string | undefined> {
  const name = await targetName(ctx, spec, domain);
  if (!validName(name)) return undefined;
  const r = await query(ctx, name, 'TXT');
  if (r.kind !== 'answer' || r.records.length !== 1) return undefined;
  const text = r.records[0].join('');
  try {
    return await expand(parseMacroString(text, { spaces: true, explanationLetters: true }), valuesFor(ctx, domain), EXPLANATION_BOUND);
  } catch (err) {
    if (err instanceof MacroSyntaxError) return undefined;
    throw err;
  }
}

/** The explanation never changes the result (§6.2), not even when the query cap runs out on it; an abort still stops. */
async function explanationOrNothing(ctx: EvaluationContext, spec: DomainSpec, domain: string): Promise<string | undefined> {
  try {
    return await explanationOf(ctx, spec, domain);
  } catch (err) {
    if (err instanceof SpfStop && !ctx.signal?.aborted) return undefined;
    throw err;
  }
}

/** Something that can be asked for in DNS: 1–63 octet labels, 253 in all (RFC 1035 §2.3.4). */
export function validName(name: string): boolean {
  return name.length > 0 && name.length <= 253 && name.split('.').every((l) => l.length > 0 && l.length <= 63);
}
