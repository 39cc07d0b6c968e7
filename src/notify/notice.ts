/**
 * One notice as an RFC 5322 message: From the notify address, To its recipients, the
 * template's Subject (RFC 2047 B-encoded when a site template is not ASCII), Date, Message-ID,
 * `Auto-Submitted: auto-generated` (RFC 3834: nobody auto-replies to it), X-Postseal-Notice
 * naming the audience and category, and a text/plain UTF-8 body, quoted-printable when it is
 * not ASCII (so the notice is 7-bit, like everything postseal signs). Lines are CRLF.
 */
import { randomBytes } from 'node:crypto';
import type { NoticeCategory } from '../pipeline/stage';
import type { Audience } from '../lib/notice-templates';

export interface NoticeInput {
  readonly from: string;
  readonly to: readonly string[];
  readonly subject: string;
  readonly body: string;
  readonly audience: Audience;
  readonly category: NoticeCategory;
  /** Right side of the Message-ID. */
  readonly hostname: string;
  readonly now: Date;
}

const CRLF = '\r\n';
const ascii = (s: string) => /^[\x20-\x7e]*$/.test(s);

/** RFC 2047 B encoding in words short enough for a 78-column line. */
function encodedWords(text: string): string {
  const words: string[] = [];
  let chunk = '';
  for (const ch of text) {
    if (Buffer.byteLength(chunk + ch) > 45) {
      words.push(chunk);
      chunk = '';
    }
    chunk += ch;
  }
  if (chunk) words.push(chunk);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w).toString('base64')}?=`).join(`${CRLF} `);
}

/** Quoted-printable (RFC 2045 6.7) of UTF-8 text with CRLF line ends. */
export function quotedPrintable(text: string): string {
  return text
    .split(/\r?\n/)
    .map((line) => {
      let out = '';
      let len = 0;
      const bytes = Buffer.from(line);
      bytes.forEach((b, i) => {
        const last = i === bytes.length - 1;
        const lit = (b >= 33 && b <= 126 && b !== 61) || (b === 32 && !last) || (b === 9 && !last);
        const piece = lit ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
        if (len + piece.length > 75) {
          out += `=${CRLF}`;
          len = 0;
        }
        out += piece;
        len += piece.length;
      });
      return out;
    })
    .join(CRLF);
}

function date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

export function buildNotice(n: NoticeInput): { raw: Buffer; messageId: string } {
  const messageId = `${n.now.getTime()}.${randomBytes(8).toString('hex')}@${n.hostname}`;
  // A long ${recipients} line is wrapped by quoted-printable rather than sent over SMTP's 998 octets.
  const plain = ascii(n.body.replace(/\n/g, ' ')) && n.body.split('\n').every((l) => l.length <= 900);
  const header = [
    `From: <${n.from}>`,
    // Recipient notices go to every recipient of the message: none learns the others (a Bcc).
    `To: ${n.to.length ? n.to.map((a) => `<${a}>`).join(`,${CRLF} `) : 'undisclosed-recipients:;'}`,
    `Subject: ${ascii(n.subject) ? n.subject : encodedWords(n.subject)}`,
    `Date: ${date(n.now)}`,
    `Message-ID: <${messageId}>`,
    'Auto-Submitted: auto-generated',
    `X-Postseal-Notice: ${n.audience}; category=${n.category}`,
    'MIME-Version: 1.0',
    `Content-Type: text/plain; charset=${plain ? 'us-ascii' : 'utf-8'}`,
    `Content-Transfer-Encoding: ${plain ? '7bit' : 'quoted-printable'}`,
  ];
  const body = plain ? n.body.replace(/\r?\n/g, CRLF) : quotedPrintable(n.body);
  return { raw: Buffer.from(`${header.join(CRLF)}${CRLF}${CRLF}${body}${body.endsWith(CRLF) ? '' : CRLF}`, 'utf8'), messageId };
}
