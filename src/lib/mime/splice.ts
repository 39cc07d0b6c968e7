/**
 * Rewrites chosen byte ranges of a stream and copies every other byte as it is: the way a
 * message is changed without being rebuilt. Each edit gets the original bytes of its range
 * as a stream and yields the replacement; it must read all of that stream or none of it.
 */

export interface Edit {
  readonly start: number;
  readonly end: number;
  replace(original: AsyncIterable<Buffer>): AsyncIterable<Buffer>;
}

/** `edits` sorted by start, not overlapping. */
export async function* applyEdits(source: AsyncIterable<Buffer>, edits: readonly Edit[]): AsyncGenerator<Buffer> {
  const cursor = new ByteCursor(source[Symbol.asyncIterator]());
  try {
    let pos = 0;
    for (const edit of edits) {
      yield* cursor.take(edit.start - pos);
      const original = cursor.take(edit.end - edit.start);
      yield* edit.replace(original);
      for await (const skipped of original) void skipped;
      pos = edit.end;
    }
    yield* cursor.rest();
  } finally {
    // A reader that stops early (a stage timeout) lets the source close its file.
    await cursor.close();
  }
}

export function replaceWith(bytes: Buffer): Edit['replace'] {
  return async function* () {
    yield bytes;
  };
}

class ByteCursor {
  private pending: Buffer = Buffer.alloc(0);
  private done = false;

  constructor(private readonly source: AsyncIterator<Buffer>) {}

  /** The next n bytes, fewer if the stream ends first. */
  async *take(n: number): AsyncGenerator<Buffer> {
    while (n > 0 && (await this.fill())) {
      const part = this.pending.subarray(0, n);
      this.pending = this.pending.subarray(part.length);
      n -= part.length;
      yield part;
    }
  }

  async *rest(): AsyncGenerator<Buffer> {
    while (await this.fill()) {
      const part = this.pending;
      this.pending = Buffer.alloc(0);
      yield part;
    }
  }

  async close(): Promise<void> {
    if (!this.done) await this.source.return?.();
    this.done = true;
  }

  private async fill(): Promise<boolean> {
    if (this.pending.length > 0) return true;
    if (this.done) return false;
    const next = await this.source.next();
    if (next.done) {
      this.done = true;
      return false;
    }
    this.pending = next.value;
    return true;
  }
}
