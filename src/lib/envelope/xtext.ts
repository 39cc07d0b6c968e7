/**
 * xtext (RFC 3461 §4), the encoding of DSN's ENVID and ORCPT values, and of XFORWARD
 * attributes (Postfix XFORWARD_README), plus the checks Postfix's smtpd applies to them.
 *
 * postseal passes ENVID and ORCPT downstream exactly as the upstream wrote them, still
 * encoded: decoding and re-sending them turned `bob+2Btag` into `bob+tag`, which Postfix
 * refuses (501 5.5.4) and bounces, and let `+20` smuggle extra parameters. These functions
 * only validate and decode for our own use (logs, reports); they never build what goes on.
 */

/** "!".."~" except "+" and "=" are themselves; anything else is "+" and two upper-case hex digits. */
const XCHAR = /[^\x21-\x2a\x2c-\x3c\x3e-\x7e]/gu;
const VALID_XTEXT = /^(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*$/;

export function encodeXtext(value: string): string {
  // Each UTF-8 byte of a non-ASCII character is one hexchar.
  return value.replace(XCHAR, (c) => [...Buffer.from(c, 'utf8')].map((b) => `+${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
}

export function isXtext(value: string): boolean {
  return VALID_XTEXT.test(value);
}

/** The decoded text, or null when the value is not xtext. Bytes are read as UTF-8. */
export function decodeXtext(value: string): string | null {
  if (!isXtext(value)) return null;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    if (value[i] === '+') {
      bytes.push(parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(value.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Printable US-ASCII, space included: what Postfix accepts once ENVID or an rfc822 ORCPT is decoded. */
export function isPrintableAscii(text: string): boolean {
  return /^[\x20-\x7e]*$/.test(text);
}

/**
 * ENVID as Postfix's smtpd takes it: non-empty xtext. RFC 3461 §4.4 also asks for at most 100
 * printable characters, but Postfix does not check that, and what Postfix took must not be
 * refused here: its own smtp client sends it on to us as it was.
 */
export function validEnvid(value: string): boolean {
  return value.length > 0 && isXtext(value);
}

/**
 * ORCPT=addr-type;value (RFC 3461 §4.2) as Postfix's smtpd takes it: a non-empty addr-type
 * atom and a non-empty value that is xtext, or for utf-8 (RFC 6533, whose \x{HEX} escapes are
 * not xtext) UTF-8 text without controls, space, "+" or "=". Nothing stricter: Postfix sends
 * every ORCPT it took on to us, and refusing one here would bounce that recipient.
 */
export function validOrcpt(value: string): boolean {
  const semi = value.indexOf(';');
  if (semi <= 0 || semi === value.length - 1) return false;
  const type = value.slice(0, semi);
  const addr = value.slice(semi + 1);
  if (!/^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+$/.test(type)) return false;
  return type.toLowerCase() === 'utf-8' ? /^[^\x00-\x20\x7f+=]+$/.test(addr) : isXtext(addr);
}
