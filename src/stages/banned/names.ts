/**
 * File names as Windows reads them, and the tricks that make a name look like another:
 * - bidirectional controls (U+202A-U+202E, U+2066-U+2069, U+200E/U+200F, U+061C): with
 *   RIGHT-TO-LEFT OVERRIDE "invoice\u202Efdp.exe" shows as "invoiceexe.pdf";
 * - invisible characters (zero-width space and joiners, word joiner, BOM, soft hyphen,
 *   Mongolian vowel separator) that hide or split an extension;
 * - trailing dots and spaces, which Windows strips when it saves "file.exe. " as "file.exe".
 * The name the rules see has all of these removed (RFC 2231/2047 encodings were decoded when
 * the part was read, lib/mime/parts.ts); matching is case-insensitive (rules.ts).
 *
 * And the words a reply or header field may show about a banned part: a short kind (".exe",
 * a detected type, "declared type") from a fixed alphabet, never the sender's bytes.
 */

const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;
const INVISIBLE = /[\u00ad\u180e\u200b-\u200d\u2060-\u2064\ufeff]/gu;

/** The name without bidi controls, invisible characters and trailing dots and spaces. */
export function normalizeName(name: string): string {
  return name
    .replace(BIDI, '')
    .replace(INVISIBLE, '')
    .replace(/[. ]+$/u, '');
}

/** NUL and C0/C1 controls: a name cut at a NUL by one program and not by another. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;
const DISGUISE = new RegExp(`${BIDI.source}|${INVISIBLE.source}|${CONTROL.source}`, 'u');

/** Whether the name uses a character that changes how it is displayed or where it ends. */
export function isDisguised(name: string): boolean {
  return DISGUISE.test(name);
}

/** The last extension of a name in a safe form (".exe"), or null when it has none that is plain. */
export function extensionOf(name: string): string | null {
  const m = /\.([a-z0-9]{1,10})$/i.exec(normalizeName(name));
  return m ? `.${m[1].toLowerCase()}` : null;
}

/** Text from a sender for a log line: control, bidi and invisible characters as \u{..}, at most 200 characters. */
export function forLog(text: string): string {
  const cut = text.length > 200 ? `${text.slice(0, 200)}...` : text;
  return cut.replace(/[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
