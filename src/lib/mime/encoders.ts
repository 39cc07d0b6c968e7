/**
 * Streaming Content-Transfer-Encodings for making a part 7-bit (RFC 2045 6.7, 6.8): output
 * lines of at most 76 characters ending in CRLF, written chunk by chunk as the input comes.
 *
 * Quoted-printable treats the input as text: each line ending (CRLF or a bare LF) becomes a
 * hard line break, so the decoded text has CRLF line endings; white space before a line
 * break and a bare CR are encoded, so nothing on the way can strip or mangle them.
 */

const MAX_LINE = 76;
const HEX = '0123456789ABCDEF';

export async function* encodeBase64(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const group = (MAX_LINE / 4) * 3;
  let rest = Buffer.alloc(0);
  let first = true;
  for await (const chunk of source) {
    const data = rest.length ? Buffer.concat([rest, chunk]) : chunk;
    const whole = data.length - (data.length % group);
    if (whole > 0) {
      yield Buffer.from(lines(data.subarray(0, whole), group, first), 'latin1');
      first = false;
    }
    rest = Buffer.from(data.subarray(whole));
  }
  if (rest.length) yield Buffer.from(lines(rest, group, first), 'latin1');
}

function lines(data: Buffer, group: number, first: boolean): string {
  const out: string[] = [];
  for (let pos = 0; pos < data.length; pos += group) out.push(data.subarray(pos, pos + group).toString('base64'));
  return (first ? '' : '\r\n') + out.join('\r\n');
}

export async function* encodeQuotedPrintable(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const qp = new QuotedPrintableEncoder();
  for await (const chunk of source) {
    const out = qp.push(chunk);
    if (out.length) yield out;
  }
  const out = qp.end();
  if (out.length) yield out;
}

class QuotedPrintableEncoder {
  private column = 0;
  /** A space or tab: literal if more text follows on its line, =20/=09 before a line break. */
  private heldSpace = -1;
  private heldCR = false;
  private out = Buffer.alloc(0);
  private pos = 0;

  push(chunk: Buffer): Buffer {
    // Worst case: every byte as =XX plus a soft break every 25 bytes.
    this.out = Buffer.allocUnsafe(chunk.length * 4 + 16);
    this.pos = 0;
    const out = this.out;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i];
      // Most bytes of text are printable ASCII that goes out as it is: no calls for those.
      if (b >= 0x21 && b <= 0x7e && b !== 0x3d && this.heldSpace < 0 && !this.heldCR && this.column < MAX_LINE - 1) {
        out[this.pos++] = b;
        this.column++;
      } else {
        this.byte(b);
      }
    }
    return out.subarray(0, this.pos);
  }

  end(): Buffer {
    this.out = Buffer.allocUnsafe(16);
    this.pos = 0;
    if (this.heldCR) this.encoded(0x0d);
    this.heldCR = false;
    this.releaseSpace(true);
    return this.out.subarray(0, this.pos);
  }

  private byte(b: number): void {
    if (this.heldCR) {
      this.heldCR = false;
      if (b === 0x0a) return this.hardBreak();
      this.releaseSpace(false);
      this.encoded(0x0d);
    }
    if (b === 0x0d) {
      this.heldCR = true;
    } else if (b === 0x0a) {
      this.hardBreak();
    } else if (b === 0x20 || b === 0x09) {
      this.releaseSpace(false);
      this.heldSpace = b;
    } else {
      this.releaseSpace(false);
      if (b >= 0x21 && b <= 0x7e && b !== 0x3d) this.literal(b);
      else this.encoded(b);
    }
  }

  private releaseSpace(atLineEnd: boolean): void {
    if (this.heldSpace < 0) return;
    const b = this.heldSpace;
    this.heldSpace = -1;
    if (atLineEnd) this.encoded(b);
    else this.literal(b);
  }

  private hardBreak(): void {
    this.releaseSpace(true);
    this.put(0x0d);
    this.put(0x0a);
    this.column = 0;
  }

  private literal(b: number): void {
    this.room(1);
    this.put(b);
    this.column += 1;
  }

  private encoded(b: number): void {
    this.room(3);
    this.put(0x3d);
    this.put(HEX.charCodeAt(b >> 4));
    this.put(HEX.charCodeAt(b & 15));
    this.column += 3;
  }

  /** A soft line break ("=" CRLF) when `width` more characters would pass 75 plus the "=". */
  private room(width: number): void {
    if (this.column + width <= MAX_LINE - 1) return;
    this.put(0x3d);
    this.put(0x0d);
    this.put(0x0a);
    this.column = 0;
  }

  private put(b: number): void {
    this.out[this.pos++] = b;
  }
}
