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
  private partial = '';
  private attrs = new Map<string, string>();
  private bytes = 0;
  private failed = false;

  constructor(private readonly maxRequestBytes: number) {}

  /** The requests that `chunk` completes, in order; after an error, nothing more is read. */
  feed(chunk: string): ReadResult[] {
    if (this.failed) return [];
    const out: ReadResult[] = [];
    let text = this.partial + chunk;
    let nl = text.indexOf('\n');
    while (nl >= 0) {
      const line = text.slice(0, nl).replace(/\r$/, '');
      text = text.slice(nl + 1);
      const r = this.line(line);
      if (r) {
        out.push(r);
        if (r.kind === 'error') return this.fail(out);
      }
      nl = text.indexOf('\n');
    }
    this.partial = text;
    if (this.bytes + this.partial.length > this.maxRequestBytes) {
      out.push({ kind: 'error', reason: 'too large' });
      return this.fail(out);
    }
    return out;
  }

  /** True while part of a request has been read (the client stopped mid-request if it closes now). */
  get midRequest(): boolean {
    return this.partial.length > 0 || this.attrs.size > 0;
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
    this.partial = '';
    this.attrs = new Map();
    return out;
  }
}

/** The answer block: one action line (no line breaks inside) and the empty line. */
export function formatAnswer(action: string): string {
  return `action=${action.replace(/[\r\n]+/g, ' ')}\n\n`;
}
