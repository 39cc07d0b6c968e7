/**
 * The envelope and the negotiation of a milter session (session.ts): SMFIC_MAIL / SMFIC_RCPT
 * arguments read by the SMTP listener's own parser (lib/envelope/commands.ts), so the
 * Transaction carries the same values on both paths (addresses and BODY, SMTPUTF8, RET, ENVID,
 * NOTIFY, ORCPT as the client wrote them); and what the milter asks of the MTA in SMFIC_OPTNEG.
 *
 * The MTA has accepted the command already: parameters the filter has no use for (AUTH=, SIZE
 * of a client, XCLIENT's) are left out, and an address our parser cannot read is kept as sent
 * rather than refused.
 */
import { parseMail, parseRcpt, type Announced, type MailCommand, type RcptCommand } from '../../lib/envelope/commands';
import { Action, MacroStage, Proto } from '../../lib/milter/protocol';

const ANNOUNCED: Announced = { eightbitmime: true, dsn: true, smtputf8: true, size: 0 };
const KNOWN_MAIL = new Set(['SIZE', 'BODY', 'SMTPUTF8', 'RET', 'ENVID']);
const KNOWN_RCPT = new Set(['NOTIFY', 'ORCPT']);

/** Header and body changes, and macros of our choosing. */
export const WANTED_ACTIONS = Action.ADDHDRS | Action.CHGHDRS | Action.CHGBODY | Action.SETSYMLIST;
/**
 * No reply to the commands whose answer is always "continue" (fewer round trips; RCPT is
 * answered, for the bank's recipient limit), no unknown commands, and header values with their
 * leading space (the exact bytes for simple header canonicalization).
 *
 * DATA is sent and answered. Postfix's smtpd writes the DATA-stage macros (and DATA), then hands
 * the milter connection to its cleanup server, which writes the header and body. Left
 * unanswered, that small packet stays unacknowledged until the kernel's delayed ACK (up to
 * 40 ms), and Nagle's algorithm on Postfix's socket holds cleanup's first write behind it: with
 * SMFIP_NODATA | SMFIP_NR_DATA every message waited ~40 ms (bench:mta --pace 100: p50 47.7 ms,
 * 4.7 ms once DATA is answered), which capped 16 SMTP sessions at ~300 msg/s.
 */
export const WANTED_PROTOCOL = Proto.NR_CONN | Proto.NR_HELO | Proto.NR_MAIL | Proto.NR_HDR | Proto.NR_EOH | Proto.NR_BODY | Proto.NR_UNKN | Proto.NOUNKNOWN | Proto.HDR_LEADSPC;

/** Postfix's default macro lists, plus every macro a bank rule names, sent at MAIL where the bank is chosen. */
export function macroLists(ruleMacros: readonly string[]): Map<number, string> {
  return new Map([
    [MacroStage.CONNECT, 'j {daemon_name} {daemon_addr} v _'],
    [MacroStage.HELO, '{tls_version} {cipher} {cipher_bits} {cert_subject} {cert_issuer}'],
    [MacroStage.ENVFROM, [...new Set(['i', '{auth_type}', '{auth_authen}', '{auth_author}', '{mail_addr}', '{daemon_name}', ...ruleMacros])].join(' ')],
    [MacroStage.ENVRCPT, 'i {rcpt_addr}'],
    [MacroStage.EOH, 'i'],
    [MacroStage.EOM, 'i'],
  ]);
}

/** SMFIC_MAIL's arguments: the path (with or without <>) and ESMTP parameters. */
export function mailOf(args: readonly string[]): MailCommand {
  const params = args.slice(1).filter((a) => KNOWN_MAIL.has(a.split('=')[0].toUpperCase()));
  const parsed = parseMail(Buffer.from([`MAIL FROM:${bracketed(args[0])}`, ...params].join(' ')), ANNOUNCED);
  return 'refused' in parsed ? { address: unbracketed(args[0]), smtputf8: params.some((p) => p.toUpperCase() === 'SMTPUTF8') } : parsed;
}

/** SMFIC_RCPT's arguments; `smtputf8` from the transaction's MAIL. */
export function rcptOf(args: readonly string[], smtputf8: boolean): RcptCommand {
  const params = args.slice(1).filter((a) => KNOWN_RCPT.has(a.split('=')[0].toUpperCase()));
  const parsed = parseRcpt(Buffer.from([`RCPT TO:${bracketed(args[0])}`, ...params].join(' ')), ANNOUNCED, smtputf8);
  return 'refused' in parsed ? { address: unbracketed(args[0]) } : parsed;
}

function bracketed(addr: string): string {
  return addr.startsWith('<') ? addr : `<${addr}>`;
}

function unbracketed(addr: string): string {
  return addr.replace(/^<(.*)>$/, '$1');
}
