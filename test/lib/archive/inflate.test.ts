/**
 * Bounded inflation: the head alone, all of it, the size and ratio caps, damaged data, and
 * the caller's abort.
 */
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { inflateBounded, type InflateOptions } from '../../../src/lib/archive/inflate';

const MiB = 1024 * 1024;
const opts = (o: Partial<InflateOptions> = {}): InflateOptions => ({
  keepBytes: 1000,
  needAll: false,
  maxBytes: 64 * MiB,
  maxRatio: 200,
  ratioFloorBytes: MiB,
  signal: new AbortController().signal,
  ...o,
});

describe('inflateBounded', () => {
  const text = randomBytes(300 * 1024).toString('hex');
  const raw = zlib.deflateRawSync(text);

  it('stops once it has the head, and says it did not finish (no damage)', async () => {
    const r = await inflateBounded('raw', raw, opts());
    expect(r.complete).toBe(false);
    expect([r.limit, r.corrupt]).toEqual([undefined, undefined]);
    expect(r.data.toString()).toBe(text.slice(0, 1000));
    expect(r.produced).toBeLessThan(text.length);
  });

  it('inflates all of it when asked, keeping what it was told to keep', async () => {
    const r = await inflateBounded('raw', raw, opts({ needAll: true, keepBytes: text.length }));
    expect(r).toMatchObject({ complete: true, produced: text.length });
    expect(r.data.toString()).toBe(text);
  });

  it('stops at the size cap', async () => {
    const r = await inflateBounded('raw', raw, opts({ needAll: true, maxBytes: 100 * 1024 }));
    expect(r.limit).toBe('size');
    expect(r.produced).toBeLessThan(200 * 1024);
  });

  it('stops a bomb at the ratio cap, long before its full size', async () => {
    const bomb = zlib.gzipSync(Buffer.alloc(20 * MiB));
    const r = await inflateBounded('gzip', bomb, opts({ needAll: true }));
    expect(r.limit).toBe('ratio');
    expect(r.produced).toBeLessThan(200 * bomb.length + 128 * 1024);
  });

  it('leaves small output alone whatever its ratio (the floor)', async () => {
    const r = await inflateBounded('gzip', zlib.gzipSync(Buffer.alloc(500 * 1024)), opts({ needAll: true }));
    expect(r.complete).toBe(true);
    expect(r.limit).toBeUndefined();
  });

  it('says damaged data is corrupt', async () => {
    const r = await inflateBounded('raw', Buffer.from([0xff, 0xff, 0xff, 0x00, 0x12]), opts({ needAll: true }));
    expect(r.corrupt).toBeDefined();
    expect(r.complete).toBe(false);
  });

  it('says a stream cut short is corrupt', async () => {
    const r = await inflateBounded('gzip', zlib.gzipSync(text).subarray(0, 5000), opts({ needAll: true }));
    expect(r.corrupt).toBeDefined();
  });

  it('stops and rejects when the signal aborts while it inflates', async () => {
    const ac = new AbortController();
    const running = inflateBounded('raw', raw, opts({ needAll: true, keepBytes: 0, signal: ac.signal }));
    ac.abort(new Error('stage timeout'));
    await expect(running).rejects.toThrow('stage timeout');
  });

  it('rejects with the reason of an aborted signal', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stage timeout'));
    await expect(inflateBounded('raw', raw, opts({ needAll: true, signal: ac.signal }))).rejects.toThrow('stage timeout');
  });
});
