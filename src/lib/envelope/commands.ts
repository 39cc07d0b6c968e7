/**
 * MAIL FROM and RCPT TO command lines (RFC 5321 §4.1.1.2-3, §4.1.2) with the ESMTP
 * parameters postseal announces: SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531),
 * RET/ENVID/NOTIFY/ORCPT (RFC 3461).
 *
 * Hand-written because smtp-server's parser (3.21.6) was shown wrong for a filter behind
 * Postfix: it xtext-decodes every parameter (ORCPT=rfc822;bob+2Btag@... became bob+tag@...,
 * which the reinjection smtpd refuses, so every user+tag recipient bounced), turns A-labels
 * into U-labels (sent on without SMTPUTF8: 501 5.1.3), and refuses with 5xx addresses Postfix
 * accepted ("john doe"@example.net, a@my_host.example.net). Here the path and the parameter
 * values are kept exactly as written, to be sent on unchanged; values are only validated.
 *
 * Refusals name a reply of smtp/replies.ts: an address or command this parser cannot read is
 * a 4xx (Postfix keeps the mail and the log says why; postseal never bounces mail Postfix
 * took over its own parser), while a parameter value Postfix's own smtpd would refuse is
 * 501 5.5.4 and an unannounced parameter 555 5.5.4, as Postfix answers them.
 */
import { isUtf8 } from 'node:buffer';
import type { ReplyReason } from '../../smtp/replies';
import { validEnvid, validOrcpt } from './xtext';

/**
 * What this listener announced in its EHLO reply (the bank's discardEhloKeywords hide the
 * rest); a parameter of an extension not announced is refused with 555 5.5.4 (RFC 5321
 * 4.1.1.11: a client may use a parameter only of an extension the server announced), except
 * SIZE=, which is read but not compared with a limit that was not announced (the limit is
 * still enforced during DATA). PIPELINING has no parameters; a hidden one is not announced
 * and a client that pipelines anyway is answered in order all the same.
 */
export interface Announced {
  /** 8BITMIME: the BODY parameter (RFC 6152). */
  readonly eightbitmime: boolean;
  readonly dsn: boolean;
  readonly smtputf8: boolean;
  /** The SIZE limit announced, or 0 when SIZE is not announced (then SIZE= is not checked). */
  readonly size: number;
}

export interface MailCommand {
  /** The reverse-path between < and > as written ("" for the null sender), a source route dropped. */
  readonly address: string;
  readonly body?: '7BIT' | '8BITMIME';
  readonly smtputf8: boolean;
  readonly ret?: 'FULL' | 'HDRS';
  /** ENVID as written, still xtext. */
  readonly envid?: string;
}

export interface RcptCommand {
  readonly address: string;
  /** NOTIFY as written, e.g. "SUCCESS,FAILURE". */
  readonly notify?: string;
  /** ORCPT as written: addr-type ";" encoded address. */
  readonly orcpt?: string;
}

export interface Refusal {
  readonly refused: ReplyReason;
  readonly detail: string;
}

const CONTROL = /[\x00-\x1f\x7f]/;
const KEYWORD = /^[A-Za-z0-9][A-Za-z0-9-]*$/;
/** RFC 5321 esmtp-value, with the UTF-8 that RFC 6531 allows. */
const VALUE = /^[^\x00-\x20=\x7f]+$/;
const NOTIFY = /^(?:NEVER|(?:SUCCESS|FAILURE|DELAY)(?:,(?:SUCCESS|FAILURE|DELAY))*)$/i;

/** `line` is the command as received, without its line ending. */
export function parseMail(line: Buffer, announced: Announced): MailCommand | Refusal {
  const cmd = split(line, 'MAIL FROM', 'senderNotUnderstood');
  if ('refused' in cmd) return cmd;
  let body: MailCommand['body'];
  let ret: MailCommand['ret'];
  let envid: string | undefined;
  let smtputf8 = false;
  for (const [keyword, value] of cmd.params) {
    switch (keyword) {
      case 'SIZE':
        if (value === undefined || !/^\d{1,20}$/.test(value)) return bad('SIZE', 'not a number');
        if (announced.size > 0 && Number(value) > announced.size) return { refused: 'messageTooBig', detail: `SIZE=${value} over ${announced.size}` };
        break;
      case 'BODY': {
        if (!announced.eightbitmime) return unsupported(keyword);
        const v = value?.toUpperCase();
        if (v !== '7BIT' && v !== '8BITMIME') return bad('BODY', 'must be 7BIT or 8BITMIME');
        body = v;
        break;
      }
      case 'SMTPUTF8':
        if (!announced.smtputf8) return unsupported(keyword);
        if (value !== undefined) return bad('SMTPUTF8', 'takes no value');
        smtputf8 = true;
        break;
      case 'RET': {
        if (!announced.dsn) return unsupported(keyword);
        const v = value?.toUpperCase();
        if (v !== 'FULL' && v !== 'HDRS') return bad('RET', 'must be FULL or HDRS');
        ret = v;
        break;
      }
      case 'ENVID':
        if (!announced.dsn) return unsupported(keyword);
        if (value === undefined || !validEnvid(value)) return bad('ENVID', 'not printable xtext of at most 100 characters');
        envid = value;
        break;
      default:
        return unsupported(keyword);
    }
  }
  if (!smtputf8 && !isAscii(cmd.address)) return { refused: 'senderNotUnderstood', detail: 'non-ASCII address without SMTPUTF8' };
  return { address: cmd.address, smtputf8, ...(body ? { body } : {}), ...(ret ? { ret } : {}), ...(envid !== undefined ? { envid } : {}) };
}

/** `smtputf8`: the transaction's MAIL had SMTPUTF8, so a UTF-8 address is allowed. */
export function parseRcpt(line: Buffer, announced: Announced, smtputf8: boolean): RcptCommand | Refusal {
  const cmd = split(line, 'RCPT TO', 'recipientNotUnderstood');
  if ('refused' in cmd) return cmd;
  if (cmd.address === '') return { refused: 'recipientNotUnderstood', detail: 'empty recipient' };
  let notify: string | undefined;
  let orcpt: string | undefined;
  for (const [keyword, value] of cmd.params) {
    if (!announced.dsn || (keyword !== 'NOTIFY' && keyword !== 'ORCPT')) return unsupported(keyword);
    if (keyword === 'NOTIFY') {
      if (value === undefined || !NOTIFY.test(value)) return bad('NOTIFY', 'must be NEVER or a list of SUCCESS, FAILURE, DELAY');
      notify = value;
    } else {
      if (value === undefined || !validOrcpt(value)) return bad('ORCPT', 'must be addr-type;xtext');
      orcpt = value;
    }
  }
  if (!smtputf8 && !isAscii(cmd.address)) return { refused: 'recipientNotUnderstood', detail: 'non-ASCII address without SMTPUTF8' };
  return { address: cmd.address, ...(notify !== undefined ? { notify } : {}), ...(orcpt !== undefined ? { orcpt } : {}) };
}

/** The path and the parameters (keyword upper case, value as written), or why not. */
function split(raw: Buffer, verb: string, addressRefusal: ReplyReason): { address: string; params: [string, string | undefined][] } | Refusal {
  const fail = (detail: string): Refusal => ({ refused: addressRefusal, detail });
  // Written on as UTF-8 later, so only bytes that survive a UTF-8 round trip are taken.
  if (!isUtf8(raw)) return fail('command is not UTF-8');
  const line = raw.toString('utf8');
  const m = new RegExp(`^${verb.replace(' ', ' ?')}: ?`, 'i').exec(line);
  if (!m) return fail(`expected "${verb}:<address>"`);
  let i = m[0].length;
  while (line[i] === ' ') i++;
  if (line[i] !== '<') return fail('address not in <>');
  const end = pathEnd(line, i + 1);
  if (end < 0) return fail('no closing > (or an unterminated quoted string)');
  const path = line.slice(i + 1, end);
  if (CONTROL.test(path)) return fail('control character in address');
  const params: [string, string | undefined][] = [];
  const rest = line.slice(end + 1);
  if (rest !== '' && rest[0] !== ' ') return fail('text after the address');
  const seen = new Set<string>();
  for (const p of rest.split(' ').filter(Boolean)) {
    const eq = p.indexOf('=');
    const keyword = (eq < 0 ? p : p.slice(0, eq)).toUpperCase();
    const value = eq < 0 ? undefined : p.slice(eq + 1);
    if (!KEYWORD.test(keyword)) return bad(keyword, 'not a parameter keyword');
    if (value !== undefined && !VALUE.test(value)) return bad(keyword, 'bad value syntax');
    if (seen.has(keyword)) return bad(keyword, 'given twice');
    seen.add(keyword);
    params.push([keyword, value]);
  }
  return { address: withoutSourceRoute(path), params };
}

/** Index of the ">" that closes the path, quoted strings and quoted pairs skipped; -1 if none. */
function pathEnd(line: string, from: number): number {
  let quoted = false;
  for (let i = from; i < line.length; i++) {
    const c = line[i];
    if (c === '\\') i++;
    else if (c === '"') quoted = !quoted;
    else if (c === '>' && !quoted) return i;
  }
  return -1;
}

/** RFC 5321 §4.1.2 and appendix C: "@relay1,@relay2:" before the mailbox is accepted and ignored. */
function withoutSourceRoute(path: string): string {
  const m = /^@[^":]*:/.exec(path);
  return m ? path.slice(m[0].length) : path;
}

function isAscii(text: string): boolean {
  return /^[\x00-\x7f]*$/.test(text);
}

function bad(keyword: string, why: string): Refusal {
  return { refused: 'badParameter', detail: `${keyword}: ${why}` };
}

function unsupported(keyword: string): Refusal {
  return { refused: 'unsupportedParameter', detail: keyword };
}
