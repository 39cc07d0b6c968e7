/**
 * SPF at RCPT time for the policy service, as postfix-policyd-spf-python does it: the HELO
 * identity and the MAIL FROM identity (RFC 7208 §2.3, §2.4) checked with lib/spf (the same
 * engine and resolver as the spf stage), once per message; "fail" (and what rejectOn lists)
 * is answered 550 5.7.23 (RFC 7372), a temperror DEFER_IF_PERMIT 4.4.3 or a Received-SPF, any
 * other result a Received-SPF field (RFC 7208 §9.1) to prepend.
 *
 * Reads services.policy.spf. Never throws for a DNS problem: lib/spf makes it a temperror.
 */
import type { MainConfig } from '../../config/main-schema';
import type { DnsResolver } from '../../lib/dns';
import { checkSpf, type SpfResult } from '../../lib/spf';
import { replies } from '../../smtp/replies';

export type SpfPolicySettings = MainConfig['services']['policy']['spf'];

export interface SpfPolicyInput {
  readonly clientAddress: string;
  readonly helo: string;
  readonly sender: string;
}

export type SpfDecision =
  | { readonly kind: 'reject'; readonly action: string; readonly result: SpfResult }
  | { readonly kind: 'defer'; readonly action: string; readonly result: SpfResult }
  /** header: the Received-SPF field to prepend, or undefined when receivedSpf is off. */
  | { readonly kind: 'accept'; readonly header: string | undefined; readonly result: SpfResult };

export interface SpfPolicyDeps {
  readonly resolver: DnsResolver;
  /** Our host name: receiver= and the comment's prefix. */
  readonly receiver: string;
  readonly signal?: AbortSignal;
}

export async function spfPolicy(settings: SpfPolicySettings, input: SpfPolicyInput, deps: SpfPolicyDeps): Promise<SpfDecision> {
  const base = { ip: input.clientAddress, helo: input.helo, resolver: deps.resolver, receiver: deps.receiver, signal: deps.signal };
  const rejectOn = new Set<string>(settings.rejectOn);
  // HELO first (RFC 7208 §2.3 recommends it), as policyd-spf does; a null sender is checked through it.
  if (settings.heloCheck && input.sender && input.helo) {
    const helo = await checkSpf({ ...base, sender: null });
    if (rejectOn.has(helo.result)) return reject(helo);
  }
  const result = await checkSpf({ ...base, sender: input.sender || null });
  if (rejectOn.has(result.result)) return reject(result);
  if (result.result === 'temperror' && settings.temperror === 'defer') {
    const r = replies.policySpfTempfail;
    return { kind: 'defer', action: `DEFER_IF_PERMIT ${r.enhanced} ${r.text}`, result };
  }
  return { kind: 'accept', header: settings.receivedSpf ? receivedSpf(result, input, deps.receiver) : undefined, result };
}

/**
 * Postfix puts our text into one reply line after "550 5.7.23 <recipient>: Recipient address
 * rejected: " and does not wrap it; SMTP allows 512 octets a line (RFC 5321 §4.5.3.1.5), and an
 * exp= explanation may be 1,024 characters (seen through Postfix 3.7: an 850-character line).
 * 150 octets leaves room for a long recipient.
 */
const LONGEST_WHY = 150;

/** At most `max` octets of UTF-8 (a SMTPUTF8 sender in %{l} is two or more a letter), whole characters. */
function cut(text: string, max = LONGEST_WHY): string {
  if (Buffer.byteLength(text) <= max) return text;
  let out = '';
  let octets = 0;
  for (const ch of text) {
    octets += Buffer.byteLength(ch);
    if (octets > max - 3) break;
    out += ch;
  }
  return `${out.trimEnd()}...`;
}

function reject(result: SpfResult): SpfDecision {
  const r = replies.policySpfRejected;
  const why = `: ${cut((result.explanation || result.comment).trim())}`;
  return { kind: 'reject', action: `${r.code} ${r.enhanced} ${r.text} (${result.identity} ${result.result})${why}`, result };
}

/**
 * Postfix prepends the field as one line: a policy answer cannot fold it. A sender who chooses a
 * HELO name and an address of a thousand characters each (Postfix takes commands of 2,048) would
 * make it longer than RFC 5322's 998 octets, and longer than the policy client reads in one
 * attribute; the values the sender or the domain chose are then cut, the longest allowance first.
 */
const LONGEST_FIELD = 998;
const VALUE_ALLOWANCES = [Infinity, 200, 100, 40];

/** RFC 7208 §9.1: result, comment, then key-value pairs (values as dot-atom or quoted-string). */
export function receivedSpf(result: SpfResult, input: SpfPolicyInput, receiver: string): string {
  const comment = result.comment.replace(/[()\\]/g, ' ').replace(/\s+/g, ' ');
  let field = '';
  for (const max of VALUE_ALLOWANCES) {
    const v = (text: string) => (max === Infinity ? text : cut(text, max));
    const pairs = [
      `client-ip=${input.clientAddress}`,
      `envelope-from=${quote(v(input.sender))}`,
      `helo=${quote(v(input.helo))}`,
      `receiver=${quote(receiver)}`,
      `identity=${result.identity}`,
    ];
    if (result.mechanism) pairs.push(`mechanism=${quote(v(result.mechanism))}`);
    if (result.result === 'permerror' || result.result === 'temperror') pairs.push(`problem=${quote(v(result.reason ?? result.result))}`);
    field = `Received-SPF: ${result.result} (${v(comment)}) ${pairs.join('; ')};`;
    if (Buffer.byteLength(field) <= LONGEST_FIELD) break;
  }
  return field;
}

function quote(value: string): string {
  return /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/.test(value) ? value : `"${value.replace(/[\\"]/g, '\\$&').replace(/[\r\n]/g, ' ')}"`;
}
