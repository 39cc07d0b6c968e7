/**
 * The SPF record: which TXT strings are one (RFC 7208 §4.5) and its full syntax check
 * (§4.6, §5, §6, §12 ABNF). The whole record is parsed before anything is evaluated, so a
 * syntax error anywhere — after a term that matches, in a modifier nobody reads, an exp=
 * that is never fetched — is a permerror (§4.6: "if there are any syntax errors anywhere in
 * the record, check_host() returns immediately with the result permerror").
 *
 * Fails with RecordSyntaxError (its message is the reason shown in the comment).
 */
import { ipv6Bytes } from './address';
import { MacroSyntaxError, parseDomainSpec, parseMacroString, type MacroToken } from './macro';

export type Qualifier = '+' | '-' | '~' | '?';

export interface DomainSpec {
  readonly text: string;
  readonly tokens: readonly MacroToken[];
}

export type Mechanism =
  | { readonly kind: 'all' }
  | { readonly kind: 'include' | 'exists'; readonly domain: DomainSpec }
  | { readonly kind: 'a' | 'mx'; readonly domain?: DomainSpec; readonly cidr4: number; readonly cidr6: number }
  | { readonly kind: 'ptr'; readonly domain?: DomainSpec }
  | { readonly kind: 'ip4' | 'ip6'; readonly network: Uint8Array; readonly prefix: number };

export interface Directive {
  readonly qualifier: Qualifier;
  readonly mechanism: Mechanism;
  /** The term as published, for the comment and the result's `mechanism`. */
  readonly text: string;
}

export interface SpfRecord {
  readonly directives: readonly Directive[];
  readonly redirect?: DomainSpec;
  readonly exp?: DomainSpec;
}

export class RecordSyntaxError extends Error {}

const VERSION = /^v=spf1(?: |$)/i;
const MODIFIER = /^([a-z][a-z0-9\-_.]*)=(.*)$/i;
const MECHANISM = /^([a-z][a-z0-9]*)(.*)$/i;

/** §4.5: a record is a TXT record (its strings joined) that starts with "v=spf1" and a space or its end. */
export function isSpfRecord(text: string): boolean {
  return VERSION.test(text);
}

export function parseRecord(text: string): SpfRecord {
  if (!isSpfRecord(text)) throw new RecordSyntaxError('not an SPF record');
  // §3.1/§12: US-ASCII; terms are separated by SP only (a tab or CR is no separator).
  const bad = /[^\x20-\x7e]/.exec(text);
  if (bad) throw new RecordSyntaxError(`character 0x${bad[0].charCodeAt(0).toString(16)} in the record`);
  const directives: Directive[] = [];
  let redirect: DomainSpec | undefined;
  let exp: DomainSpec | undefined;
  for (const term of text.slice(6).split(' ').filter(Boolean)) {
    const modifier = MODIFIER.exec(term);
    if (modifier) {
      const name = modifier[1].toLowerCase();
      if (name === 'redirect' || name === 'exp') {
        // §6: each at most once.
        if ((name === 'redirect' ? redirect : exp) !== undefined) throw new RecordSyntaxError(`${name}= appears twice`);
        const spec = domainSpec(modifier[2], term);
        if (name === 'redirect') redirect = spec;
        else exp = spec;
      } else {
        // Unknown modifiers are ignored (§6), but their value must be a macro-string (A/3).
        guard(() => parseMacroString(modifier[2], { spaces: false, explanationLetters: true }), term, true);
      }
      continue;
    }
    directives.push(directive(term));
  }
  return { directives, redirect, exp };
}

function directive(term: string): Directive {
  const qualifier = '+-~?'.includes(term[0]) ? (term[0] as Qualifier) : '+';
  const body = qualifier === term[0] ? term.slice(1) : term;
  const m = MECHANISM.exec(body);
  if (!m) throw new RecordSyntaxError(`"${term}" is not a mechanism or modifier`);
  const name = m[1].toLowerCase();
  const rest = m[2];
  const mechanism = ((): Mechanism => {
    switch (name) {
      case 'all':
        if (rest) break;
        return { kind: 'all' };
      case 'include':
      case 'exists':
        if (!rest.startsWith(':')) break;
        return { kind: name, domain: domainSpec(rest.slice(1), term) };
      case 'a':
      case 'mx': {
        const { spec, cidr4, cidr6 } = dualCidr(rest, term);
        if (spec && !spec.startsWith(':')) break;
        return { kind: name, domain: spec ? domainSpec(spec.slice(1), term) : undefined, cidr4, cidr6 };
      }
      case 'ptr':
        if (!rest) return { kind: 'ptr' };
        if (!rest.startsWith(':')) break;
        return { kind: 'ptr', domain: domainSpec(rest.slice(1), term) };
      case 'ip4':
      case 'ip6':
        if (!rest.startsWith(':')) break;
        return ipNetwork(name, rest.slice(1), term);
      default:
        throw new RecordSyntaxError(`unknown mechanism "${term}"`);
    }
    throw new RecordSyntaxError(`"${term}" is not valid ${name} syntax`);
  })();
  return { qualifier, mechanism, text: term };
}

/** dual-cidr-length = [ ip4-cidr-length ] [ "/" ip6-cidr-length ], at the end of a/mx. */
function dualCidr(rest: string, term: string): { spec: string; cidr4: number; cidr6: number } {
  const m = /(?:\/(\d+))?(?:\/\/(\d+))?$/.exec(rest);
  const spec = m ? rest.slice(0, m.index) : rest;
  const cidr4 = m?.[1] === undefined ? 32 : cidrValue(m[1], 32, term);
  const cidr6 = m?.[2] === undefined ? 128 : cidrValue(m[2], 128, term);
  return { spec, cidr4, cidr6 };
}

/** No leading zeros, no more than the address has bits (§5.6: "/0" is fine, "/032" and "/33" are not). */
function cidrValue(digits: string, max: number, term: string): number {
  const n = Number(digits);
  if ((digits.length > 1 && digits[0] === '0') || n > max) throw new RecordSyntaxError(`bad prefix length /${digits} in "${term}"`);
  return n;
}

const QNUM = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]\\d|\\d)';
const IP4_NETWORK = new RegExp(`^${QNUM}\\.${QNUM}\\.${QNUM}\\.${QNUM}$`);

function ipNetwork(kind: 'ip4' | 'ip6', arg: string, term: string): Mechanism {
  const slash = arg.indexOf('/');
  const addr = slash < 0 ? arg : arg.slice(0, slash);
  const cidr = slash < 0 ? undefined : arg.slice(slash + 1);
  if (cidr !== undefined && !/^\d+$/.test(cidr)) throw new RecordSyntaxError(`bad prefix length in "${term}"`);
  if (kind === 'ip4') {
    const m = IP4_NETWORK.exec(addr);
    if (!m) throw new RecordSyntaxError(`"${addr}" is not an IPv4 network in "${term}"`);
    return { kind, network: Uint8Array.from(m.slice(1, 5).map(Number)), prefix: cidr === undefined ? 32 : cidrValue(cidr, 32, term) };
  }
  const bytes = ipv6Bytes(addr);
  if (!bytes) throw new RecordSyntaxError(`"${addr}" is not an IPv6 network in "${term}"`);
  return { kind, network: bytes, prefix: cidr === undefined ? 128 : cidrValue(cidr, 128, term) };
}

function domainSpec(text: string, term: string): DomainSpec {
  return { text, tokens: guard(() => parseDomainSpec(text), term) };
}

function guard<T>(parse: () => T, term: string, modifierValue = false): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof MacroSyntaxError) throw new RecordSyntaxError(`${modifierValue ? 'bad modifier value' : 'bad domain-spec'} in "${term}": ${err.message}`);
    throw err;
  }
}
