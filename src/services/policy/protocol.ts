/**
 * Postfix's policy delegation protocol (SMTPD_POLICY_README, "Protocol description"): a
 * request is "name=value" lines ended by an empty line; the answer is "action=..." and an
 * empty line; a connection carries many requests, one after another (Postfix may also write
 * the next before reading the answer: pipelining). Lines end in LF (CR before it is dropped).
 *
 * Hand-written: the protocol is twenty lines of line splitting, no library implements it.
 *
 * Limits against a client that is not Postfix: a request (all its lines) longer than
 * `maxRequestBytes`, or a line without "=", is an error the service answers once and then
 * closes the connection on; the reader never holds more than maxRequestBytes of a request.
 * Unknown attribute names are kept like the others (Postfix adds new ones over time); a
 * repeated name keeps its last value.
 */

export type PolicyRequest = ReadonlyMap<string, string>;

export type ReadResult = { readonly kind: 'request'; readonly request: PolicyRequest } | { readonly kind: 'error'; readonly reason: 'too large' | 'malformed' };

export class RequestReader {
  /** Input not parsed yet: whole lines waiting (see take), then the unfinished line. */
  private text = '';
  private attrs = new Map<string, string>();
  private bytes = 0;
  private failed = false;

  constructor(private readonly maxRequestBytes: number) {}

  /** Adds `chunk`; returns at most `max` of the requests the input now completes, in order. */
  feed(chunk: string, max = Number.POSITIVE_INFINITY): ReadResult[] {
    if (this.failed) return [];
    this.text += chunk;
    return this.take(max);
  }

  /**
   * At most `max` requests from the input read so far. The rest stays unparsed text: one 64 KB
   * read can hold 16,384 requests, 3.3 MB once parsed, and the service parses only as many as
   * it can answer soon.
   */
  take(max: number): ReadResult[] {
    if (this.failed) return [];
    const out: ReadResult[] = [];
    let from = 0;
    let nl = this.text.indexOf('\n');
    while (nl >= 0 && out.length < max) {
      const line = this.text.slice(from, nl).replace(/\r$/, '');
      from = nl + 1;
      const r = this.line(line);
      if (r) {
        out.push(r);
        if (r.kind === 'error') return this.fail(out);
      }
      nl = this.text.indexOf('\n', from);
    }
    this.text = this.text.slice(from);
    if (nl < 0 && this.bytes + this.text.length > this.maxRequestBytes) {
      out.push({ kind: 'error', reason: 'too large' });
      return this.fail(out);
    }
    return out;
  }

  /** True while whole lines wait to be parsed (take returns more). */
  get backlog(): boolean {
    return !this.failed && this.text.includes('\n');
  }

  /** True while part of a request has been read (the client stopped mid-request if it closes now). */
  get midRequest(): boolean {
    return this.text.length > 0 || this.attrs.size > 0;
  }

  private line(line: string): ReadResult | undefined {
    if (line === '') {
      // Blank lines between requests (no attribute yet) are not requests.
      if (this.attrs.size === 0) return undefined;
      const request = this.attrs;
      this.attrs = new Map();
      this.bytes = 0;
      return { kind: 'request', request };
    }
    this.bytes += line.length + 1;
    if (this.bytes > this.maxRequestBytes) return { kind: 'error', reason: 'too large' };
    const eq = line.indexOf('=');
    if (eq <= 0) return { kind: 'error', reason: 'malformed' };
    this.attrs.set(line.slice(0, eq).trim().toLowerCase(), line.slice(eq + 1));
    return undefined;
  }

  private fail(out: ReadResult[]): ReadResult[] {
    this.failed = true;
    this.text = '';
    this.attrs = new Map();
    return out;
  }
}

/** The answer block: one action line (no line breaks inside) and the empty line. */
export function formatAnswer(action: string): string {
  return `action=${action.replace(/[\r\n]+/g, ' ')}\n\n`;
}
