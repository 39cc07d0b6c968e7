/**
 * The boundaries of the multiparts open at one point of a MIME walk (structure.ts), and the
 * question the walker asks of every line that starts with "--": is it a delimiter, and of
 * which multipart? Kept apart from the walker because it is the part attackers aim at (a line
 * one reader takes for a boundary and another does not) and because its cost must stay linear
 * whatever the nesting.
 *
 * A line is looked up in a map keyed by the boundary without trailing white space (at most two
 * lookups: as a delimiter, and as a closing one), not compared with every open ancestor. RFC
 * 2046 boundaries never end in white space, so the line minus "--", its trailing white space
 * and then an optional "--" is the key; each candidate is then checked exactly as the line
 * would be against its boundary, so a boundary that does end in white space (a quoted
 * parameter) matches the lines it always matched.
 *
 * Beside the exact ones, the same boundaries lower-cased and without any trailing white space
 * (looseKey) are counted: a line that is one of them but no delimiter is read as one by some
 * readers (Thunderbird strips CR, FF and VT after a boundary and ends a line at a bare CR;
 * clamd ignores case), which the walker marks `ambiguous`.
 */
import type { CrDashes } from './lines';

/** What the walker keeps of a multipart: its boundary and its depth (the innermost wins). */
export interface Bounded {
  readonly boundary: string | null;
  readonly depth: number;
}

export class OpenBoundaries<P extends Bounded> {
  /** Each key's multiparts in nesting order, so the last is the innermost that uses it. */
  private readonly exact = new Map<string, P[]>();
  private readonly loose = new Map<string, number>();
  /** Exact boundary comparisons made so far: what the map saves, counted (tests check it stays linear). */
  comparisons = 0;

  get size(): number {
    return this.exact.size;
  }

  /** A multipart's boundary opens (the part has one). */
  add(part: P): void {
    const key = trimEndBlanks(part.boundary!);
    const parts = this.exact.get(key);
    if (parts) parts.push(part);
    else this.exact.set(key, [part]);
    const loose = looseKey(part.boundary!);
    this.loose.set(loose, (this.loose.get(loose) ?? 0) + 1);
  }

  /** The part's boundary is no longer open. Parts close innermost first, so it is the last of its list. */
  remove(part: P): void {
    if (!part.boundary) return;
    const key = trimEndBlanks(part.boundary);
    const parts = this.exact.get(key);
    const at = parts ? parts.lastIndexOf(part) : -1;
    if (at < 0) return;
    parts!.splice(at, 1);
    if (parts!.length === 0) this.exact.delete(key);
    const loose = looseKey(part.boundary);
    const n = (this.loose.get(loose) ?? 1) - 1;
    if (n > 0) this.loose.set(loose, n);
    else this.loose.delete(loose);
  }

  /**
   * The innermost open multipart whose delimiter `text` (a line's head after its "--") is,
   * as a delimiter or a closing one; `lenient` when it is none but a lenient reader would
   * take it for one.
   */
  match(text: string): { part: P; closing: boolean } | { lenient: boolean } {
    const key = trimEndBlanks(text);
    const plain = this.candidate(this.exact.get(key), text, false);
    const closing = key.endsWith('--') ? this.candidate(this.exact.get(trimEndBlanks(key.slice(0, -2))), text, true) : null;
    if (plain && closing) return plain.depth >= closing.depth ? { part: plain, closing: false } : { part: closing, closing: true };
    if (plain) return { part: plain, closing: false };
    if (closing) return { part: closing, closing: true };
    // Thunderbird strips any white space after a boundary and ends a line at a bare CR.
    const cr = text.indexOf('\r');
    return { lenient: this.looselyOpen(cr >= 0 ? text.slice(0, cr) : text) };
  }

  /**
   * Whether any text after a bare CR + "--" inside a line is an open boundary to a reader
   * that ends a line at a bare CR (Thunderbird), though to RFC 2046 it is inside a line.
   */
  bareCrHit(found: CrDashes): boolean {
    if (this.loose.size === 0) return false;
    return found.some((text) => this.looselyOpen(text));
  }

  private looselyOpen(text: string): boolean {
    const loose = looseKey(text);
    return this.loose.has(loose) || (loose.endsWith('--') && this.loose.has(looseKey(loose.slice(0, -2))));
  }

  /** The innermost of `parts` whose boundary `text` (the line after "--") is, as a delimiter or a closing one. */
  private candidate(parts: P[] | undefined, text: string, closing: boolean): P | null {
    for (let i = (parts?.length ?? 0) - 1; i >= 0; i--) {
      const part = parts![i];
      const boundary = part.boundary!;
      this.comparisons++;
      if (!text.startsWith(boundary)) continue;
      const rest = text.slice(boundary.length);
      if (closing ? /^--[ \t]*$/.test(rest) : /^[ \t]*$/.test(rest)) return part;
    }
    return null;
  }
}

/** `s` without the spaces and tabs at its end (transport padding, RFC 2046 5.1.1). */
function trimEndBlanks(s: string): string {
  let end = s.length;
  while (end > 0 && (s.charCodeAt(end - 1) === 0x20 || s.charCodeAt(end - 1) === 0x09)) end--;
  return end === s.length ? s : s.slice(0, end);
}

/** A boundary (or a line after its "--") as a lenient reader compares it: any case, no trailing white space of any kind. */
function looseKey(s: string): string {
  // A loop, not /[ \t...]+$/: that regular expression is quadratic on a long run of blanks.
  let end = s.length;
  while (end > 0 && (s.charCodeAt(end - 1) === 0x20 || (s.charCodeAt(end - 1) >= 0x09 && s.charCodeAt(end - 1) <= 0x0d))) end--;
  return s.slice(0, end).toLowerCase();
}
