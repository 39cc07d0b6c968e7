/**
 * The open boundaries of a MIME walk (src/lib/mime/boundaries.ts) on their own: which
 * multipart a "--" line delimits, the innermost first; what only a lenient reader takes for a
 * delimiter; and that the lookups stay at most two exact comparisons a line, however many
 * multiparts share a boundary's prefix.
 */
import { OpenBoundaries } from '../../../src/lib/mime/boundaries';

const part = (boundary: string, depth: number) => ({ boundary, depth });

describe('the open boundaries of a MIME walk', () => {
  it('finds the multipart a delimiter or a closing delimiter belongs to, transport padding allowed', () => {
    const open = new OpenBoundaries<ReturnType<typeof part>>();
    const outer = part('outer', 0);
    open.add(outer);
    expect(open.match('outer')).toEqual({ part: outer, closing: false });
    expect(open.match('outer \t')).toEqual({ part: outer, closing: false });
    expect(open.match('outer--')).toEqual({ part: outer, closing: true });
    expect(open.match('outer-- ')).toEqual({ part: outer, closing: true });
    expect(open.match('outerx')).toEqual({ lenient: false });
  });

  it('gives the innermost of two multiparts with one boundary, and the outer once the inner is removed', () => {
    const open = new OpenBoundaries<ReturnType<typeof part>>();
    const outer = part('b', 0);
    const inner = part('b', 1);
    open.add(outer);
    open.add(inner);
    expect(open.match('b')).toEqual({ part: inner, closing: false });
    open.remove(inner);
    expect(open.match('b')).toEqual({ part: outer, closing: false });
    open.remove(outer);
    expect(open.size).toBe(0);
  });

  it('prefers the deeper when a line is one boundary as a delimiter and another as a closing one ("--b--" with b and b-- open)', () => {
    const open = new OpenBoundaries<ReturnType<typeof part>>();
    const shallow = part('b--', 0);
    const deep = part('b', 1);
    open.add(shallow);
    open.add(deep);
    expect(open.match('b--')).toEqual({ part: deep, closing: true });
  });

  it('keeps a boundary that ends in white space (a quoted parameter) matching its own lines', () => {
    const open = new OpenBoundaries<ReturnType<typeof part>>();
    const p = part('gap ', 0);
    open.add(p);
    expect(open.match('gap ')).toEqual({ part: p, closing: false });
    expect(open.match('gap --')).toEqual({ part: p, closing: true });
  });

  it('says when only a lenient reader sees a delimiter: another case, CR, FF or VT after it, or after a bare CR inside a line', () => {
    const open = new OpenBoundaries<ReturnType<typeof part>>();
    open.add(part('Sep', 0));
    expect(open.match('sep')).toEqual({ lenient: true });
    expect(open.match('Sep\f')).toEqual({ lenient: true });
    expect(open.match('Sep\rtext')).toEqual({ lenient: true });
    expect(open.match('SEP--\v')).toEqual({ lenient: true });
    expect(open.match('Separate')).toEqual({ lenient: false });
    expect(open.bareCrHit(['Sep', 'x'])).toBe(true);
    expect(open.bareCrHit(['other'])).toBe(false);
    open.remove(part('Sep', 0));
    // Another object with the same boundary is not the one that was added: nothing removed.
    expect(open.match('sep')).toEqual({ lenient: true });
  });

  it('compares each line with at most the multiparts of its own key, not every open one', () => {
    const open = new OpenBoundaries<ReturnType<typeof part>>();
    for (let i = 0; i < 1000; i++) open.add(part(`b${i}`, i));
    open.match('b999');
    open.match('b0--');
    open.match('nothing');
    expect(open.comparisons).toBe(2);
  });
});
