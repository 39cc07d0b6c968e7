/**
 * The message as the stages see it: the header section parsed once into fields that keep
 * their original bytes (RFC 5322 2.2, folding included), and the body left in the spool.
 *
 * Edits make a new Message: prepended fields are written by us, removed fields drop out,
 * every other field goes out byte for byte as it came in. The body is streamed from the
 * spool on every read, never copied.
 */
import type { Spool } from './spool';

export interface HeaderField {
  /** Field name as written. */
  readonly name: string;
  /** Field name in lower case, for lookups. */
  readonly key: string;
  /** The whole field: name, colon, value, folded continuation lines and line endings. */
  readonly raw: Buffer;
}

const FIELD_START = /^[\x21-\x39\x3b-\x7e]+[ \t]*:/;

export class Message {
  private constructor(
    readonly spool: Spool,
    readonly fields: readonly HeaderField[],
    /** The empty line between header and body as received ("\r\n", "\n", or "" if none). */
    readonly separator: Buffer,
    /** Where the body starts in the spool. */
    readonly bodyOffset: number,
    /**
     * False when the header section did not end within the spool's head (spool.maxHeaderBytes):
     * the fields after the cut were not parsed, so the message must not be passed on as if
     * they were body (listener/deliver.ts refuses it).
     */
    readonly headerComplete: boolean,
  ) {}

  static parse(spool: Spool): Message {
    const { fields, separator, bodyOffset, complete } = parseHeader(spool.head, spool.size);
    return new Message(spool, fields, separator, bodyOffset, complete);
  }

  get headerSize(): number {
    return this.fields.reduce((n, f) => n + f.raw.length, 0) + this.separator.length;
  }

  get bodySize(): number {
    return this.spool.size - this.bodyOffset;
  }

  get size(): number {
    return this.headerSize + this.bodySize;
  }

  /** Fields with this name (case-insensitive), top first. */
  get(name: string): HeaderField[] {
    const key = name.toLowerCase();
    return this.fields.filter((f) => f.key === key);
  }

  /** The unfolded value of a field, without the name and the line ending. */
  static value(field: HeaderField): string {
    const text = field.raw.toString('latin1');
    return text
      .slice(text.indexOf(':') + 1)
      .replace(/\r?\n(?=[ \t])/g, '')
      .replace(/\r?\n$/, '')
      .trim();
  }

  headerBytes(): Buffer {
    return Buffer.concat([...this.fields.map((f) => f.raw), this.separator]);
  }

  /** The body, from `from` bytes into it (0: all of it). */
  openBody(from = 0): AsyncIterable<Buffer> {
    return this.spool.openRaw(this.bodyOffset + from);
  }

  /** The whole message as it would be sent on. */
  openRaw(): AsyncIterable<Buffer> {
    return prepend(this.headerBytes(), this.openBody());
  }

  withFields(fields: readonly HeaderField[]): Message {
    return new Message(this.spool, fields, this.separator, this.bodyOffset, this.headerComplete);
  }

  /** New fields on top; `value` is written as given (fold it before if it is long). */
  prepend(...added: { name: string; value: string }[]): Message {
    return this.withFields([...added.map((f) => makeField(f.name, f.value)), ...this.fields]);
  }
}

async function* prepend(first: Buffer, rest: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield first;
  yield* rest;
}

export function makeField(name: string, value: string): HeaderField {
  return { name, key: name.toLowerCase(), raw: Buffer.from(`${name}: ${value}\r\n`, 'utf8') };
}

function parseHeader(head: Buffer, totalSize: number): { fields: HeaderField[]; separator: Buffer; bodyOffset: number; complete: boolean } {
  const fields: HeaderField[] = [];
  let pos = 0;
  let current: { start: number; name: string } | null = null;
  const close = (end: number) => {
    if (current) fields.push({ name: current.name, key: current.name.toLowerCase(), raw: head.subarray(current.start, end) });
    current = null;
  };
  // Everything of the message is in the head: a header without a body ends where it ends.
  const whole = head.length >= totalSize;
  while (pos < head.length) {
    const nl = head.indexOf(0x0a, pos);
    // A last line cut by the head limit may be a field (or a field's continuation): then the
    // header did not end within the head. One that cannot become a field starts the body.
    if (nl < 0 && !whole && mayBeField(head.subarray(pos), current !== null)) return { fields, separator: Buffer.alloc(0), bodyOffset: pos, complete: false };
    const end = nl < 0 ? head.length : nl + 1;
    const line = head.subarray(pos, end);
    const isBlank = line.length <= 2 && (line[0] === 0x0a || (line[0] === 0x0d && line[1] === 0x0a));
    if (isBlank) {
      close(pos);
      return { fields, separator: line, bodyOffset: end, complete: true };
    }
    const first = line[0];
    if ((first === 0x20 || first === 0x09) && current) {
      pos = end;
      continue;
    }
    const text = line.toString('latin1');
    // A line that is not a field ends the header without an empty line, as Postfix reads it.
    if (!FIELD_START.test(text)) {
      close(pos);
      return { fields, separator: Buffer.alloc(0), bodyOffset: pos, complete: true };
    }
    close(pos);
    current = { start: pos, name: text.slice(0, text.indexOf(':')).trimEnd() };
    pos = end;
  }
  close(pos);
  return { fields, separator: Buffer.alloc(0), bodyOffset: pos, complete: whole };
}

/** Whether a line of which only `start` was read can still be a header field, a continuation or the empty line. */
function mayBeField(start: Buffer, inField: boolean): boolean {
  if (inField && (start[0] === 0x20 || start[0] === 0x09)) return true;
  if (start.length === 1 && start[0] === 0x0d) return true;
  const text = start.subarray(0, 1000).toString('latin1');
  return FIELD_START.test(text) || /^[\x21-\x39\x3b-\x7e]*[ \t]*$/.test(text);
}
