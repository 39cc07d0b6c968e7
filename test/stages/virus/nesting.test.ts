/**
 * How deep a message nests as clamd reads it (src/stages/virus/nesting.ts): also inside
 * message/rfc822 parts that were encoded, which the MIME walk does not enter.
 */
import { MAX_MIME_PARTS, MimeWalker, RFC2231_BOUNDARY } from '../../../src/lib/mime/structure';
import { nestingOf } from '../../../src/stages/virus/nesting';
import { Message } from '../../../src/transaction/message';
import { memorySpool } from '../../../src/transaction/spool';

const never = new AbortController().signal;

/** `inner` as the one part of `levels` multiparts, each inside the one before. */
function entity(levels: number, inner: string, b = 'b'): string {
  let body = inner;
  for (let i = levels; i >= 1; i--) body = `Content-Type: multipart/mixed; boundary="${b}${i}"\r\n\r\n--${b}${i}\r\n${body}\r\n--${b}${i}--\r\n`;
  return body;
}

/** `inner` as a message of its own, in a message/rfc822 part encoded by `cte`. */
function encoded(inner: string, cte: 'base64' | 'quoted-printable' = 'base64'): string {
  const message = `From: c@example.com\r\nMIME-Version: 1.0\r\n${inner}`;
  const body = cte === 'base64' ? Buffer.from(message).toString('base64').replace(/.{76}/g, '$&\r\n') : message.replace(/=/g, '=3D');
  return `Content-Type: message/rfc822\r\nContent-Transfer-Encoding: ${cte}\r\n\r\n${body}`;
}

async function nestingOfMessage(body: string) {
  const message = Message.parse(memorySpool(Buffer.from(`From: a@example.org\r\nMIME-Version: 1.0\r\n${body}`)));
  const first = (name: string) => message.get(name).map((f) => Message.value(f))[0];
  const walker = new MimeWalker(first('content-type'), first('content-transfer-encoding'));
  for await (const chunk of message.openBody()) walker.push(chunk);
  walker.end(message.bodySize);
  return nestingOf(walker.root, (from) => message.openBody(from), message.bodySize, never);
}

describe('the nesting clamd reads', () => {
  it('is the MIME depth of a message without encoded message/rfc822 parts', async () => {
    expect(await nestingOfMessage(entity(3, 'Content-Type: text/plain\r\n\r\nhi'))).toEqual({ depth: 3, pieceDepth: 1, misread: null });
  });

  it('counts what a base64 message/rfc822 part holds, one level below the part', async () => {
    expect(await nestingOfMessage(entity(1, encoded(entity(5, 'Content-Type: text/plain\r\n\r\nhi'))))).toEqual({ depth: 7, pieceDepth: 7, misread: null });
  });

  it('counts an encoded message inside an encoded message, and a quoted-printable one', async () => {
    // Boundaries of their own: the quoted-printable body is plain text to the walk around it.
    const inner = entity(2, encoded(entity(3, 'Content-Type: text/plain\r\n\r\nhi', 'q'), 'quoted-printable'), 'i');
    expect(await nestingOfMessage(entity(1, encoded(inner)))).toEqual({ depth: 1 + 1 + 2 + 1 + 3, pieceDepth: 2 + 2 + 1 + 3, misread: null });
  });

  it('is unknown (Infinity) past the walk depth inside an encoded part', async () => {
    expect((await nestingOfMessage(entity(1, encoded(entity(120, 'Content-Type: text/plain\r\n\r\nhi'))))).depth).toBe(Infinity);
  });

  it('is unknown (Infinity) when many encoded parts inside one would have it decoded over and over (the byte budget)', async () => {
    const tiny = encoded('Content-Type: text/plain\r\n\r\nhi', 'quoted-printable');
    const many = `Content-Type: multipart/mixed; boundary="m"\r\n\r\n${`--m\r\n${tiny}\r\n`.repeat(3000)}--m--\r\n`;
    expect((await nestingOfMessage(entity(1, encoded(many)))).depth).toBe(Infinity);
  });

  it('is unknown (Infinity) when the encoded parts hold more parts together than one walk makes (MAX_MIME_PARTS)', async () => {
    const half = `Content-Type: multipart/mixed; boundary="h"\r\n\r\n${'--h\r\n\r\nx\r\n'.repeat(MAX_MIME_PARTS / 2 + 10)}--h--\r\n`;
    const body = `Content-Type: multipart/mixed; boundary="top"\r\n\r\n--top\r\n${encoded(half)}\r\n--top\r\n${encoded(half)}\r\n--top--\r\n`;
    expect((await nestingOfMessage(body)).depth).toBe(Infinity);
  });

  it('names a boundary in RFC 2231 form inside an encoded part, which a piece would carry as it is', async () => {
    const inner = 'Content-Type: multipart/mixed; boundary*0="A"; boundary*1="B"\r\n\r\n--AB\r\n\r\nhi\r\n--AB--\r\n';
    expect((await nestingOfMessage(entity(1, encoded(inner)))).misread).toBe(RFC2231_BOUNDARY);
  });

  it('is unknown (Infinity) past 3,000 encoded parts (each a read of the spool; amavisd $MAXFILES)', async () => {
    const tiny = encoded('Content-Type: text/plain\r\n\r\nhi');
    const many = (n: number) => `Content-Type: multipart/mixed; boundary="m"\r\n\r\n${`--m\r\n${tiny}\r\n`.repeat(n)}--m--\r\n`;
    expect((await nestingOfMessage(many(3000))).depth).toBe(2);
    expect((await nestingOfMessage(many(3001))).depth).toBe(Infinity);
  });

  it('takes the top-level message itself when it is an encoded message/rfc822', async () => {
    expect(await nestingOfMessage(encoded(entity(4, 'Content-Type: text/plain\r\n\r\nhi')))).toEqual({ depth: 5, pieceDepth: 6, misread: null });
  });
});
