/**
 * The process-wide unpacking budget: reservations wait their turn, fail after the wait, end
 * with the caller's signal; and the banned stage, four messages at once, stays within it.
 */
import { randomBytes } from 'node:crypto';
import { ByteBudget } from '../../../src/lib/archive/memory';
import { bannedStage } from '../../../src/stages/banned';
import { decide } from '../../../src/pipeline/verdict';
import { file, makeZip, messageWith, uuencode } from '../../helpers/archives';
import { loadTestBank } from '../../helpers/banks';
import { rulesOf, stageFor, testStageDeps, testTransaction } from '../../helpers/stage-run';

const never = new AbortController().signal;
const MiB = 1024 * 1024;

describe('unpacking memory budget', () => {
  it('tryReserve grants what fits now and nothing else, without waiting or queueing', async () => {
    const b = new ByteBudget(100, 1000);
    const held = b.tryReserve(70)!;
    expect(b.tryReserve(40)).toBeNull();
    const more = b.tryReserve(30)!;
    expect(b.inUse).toBe(100);
    held.release();
    more.release();
    expect(b.inUse).toBe(0);
  });

  it('grants what fits at once, queues the rest in order, and grants it on release', async () => {
    const b = new ByteBudget(100, 1000);
    const first = await b.reserve(60, never);
    const order: string[] = [];
    const noted = (name: string) => (l: Awaited<ReturnType<ByteBudget['reserve']>>) => {
      order.push(name);
      return l;
    };
    const big = b.reserve(50, never).then(noted('big'));
    const small = b.reserve(10, never).then(noted('small'));
    await new Promise((r) => setTimeout(r, 20));
    expect(order).toEqual([]);
    first!.release();
    (await big)!.release();
    (await small)!.release();
    expect(order).toEqual(['big', 'small']);
    expect(b.inUse).toBe(0);
    expect(b.peak).toBe(60);
  });

  it('gives null after the wait, and rejects with the signal reason when aborted', async () => {
    const b = new ByteBudget(10, 30);
    const held = await b.reserve(10, never);
    expect(await b.reserve(5, never)).toBeNull();
    const ac = new AbortController();
    const waiting = b.reserve(5, ac.signal);
    ac.abort(new Error('stage timed out'));
    await expect(waiting).rejects.toThrow('stage timed out');
    held!.release();
    expect(b.inUse).toBe(0);
  });
});

describe('banned stage within the unpacking budget', () => {
  const bank = loadTestBank({ stages: ['banned'] });
  const zipOfZips = makeZip(Object.fromEntries(Array.from({ length: 3 }, (_, i) => [`part${i}.zip`, makeZip({ [`data${i}.bin`]: randomBytes(MiB) })])));
  const msg = messageWith([file('a.zip', zipOfZips, 'application/zip')]);

  it('tempfails a message when the budget stays full, and checks it once there is room', async () => {
    const memory = new ByteBudget(16 * MiB, 50);
    const stage = stageFor(bannedStage, bank, { ...testStageDeps({ server: '127.0.0.1:9' }), unpackMemory: memory });
    const held = await memory.reserve(16 * MiB, never);
    const busy = await stage.run(testTransaction(msg, { bank }), never);
    expect(busy.findings.map((f) => f.code)).toEqual(['BANNED_BUSY']);
    expect(decide(busy.findings, rulesOf(bank)).reply).toMatchObject({ code: '451', enhanced: '4.3.1' });
    held!.release();
    const ok = await stage.run(testTransaction(msg, { bank }), never);
    expect(ok.findings).toEqual([]);
    expect(memory.inUse).toBe(0);
  });

  it('tempfails a text part whose uuencoded archive ends within one read of the body, when the budget stays full', async () => {
    const memory = new ByteBudget(16 * MiB, 50);
    const stage = stageFor(bannedStage, bank, { ...testStageDeps({ server: '127.0.0.1:9' }), unpackMemory: memory });
    const text = `see:\r\n${uuencode('small.zip', makeZip({ 'invoice.pdf.exe': 'MZ' })).replace(/\n/g, '\r\n')}\r\n`;
    const uuMsg = messageWith([{ type: 'text/plain; charset=us-ascii', data: text, encoding: '7bit' }]);
    const held = await memory.reserve(16 * MiB, never);
    const busy = await stage.run(testTransaction(uuMsg, { bank }), never);
    expect(busy.findings.map((f) => f.code)).toEqual(['BANNED_BUSY']);
    held!.release();
    expect(memory.inUse).toBe(0);
  });

  it('reserves what a uuencoded archive decodes to, though its trimmed lines make it larger than the text', async () => {
    const memory = new ByteBudget(64 * MiB, 1000);
    const stage = stageFor(bannedStage, bank, { ...testStageDeps({ server: '127.0.0.1:9' }), unpackMemory: memory });
    const zip = makeZip({ 'zeros.bin': Buffer.alloc(4 * MiB), 'invoice.pdf.exe': 'MZ' }, { store: true });
    // A line of zero bytes with its trailing characters cut ("M" alone) decodes to 45 bytes, as in Thunderbird.
    const text = uuencode('z.zip', zip)
      .replace(/^M`{60}$/gm, 'M')
      .replace(/\n/g, '\r\n');
    expect(text.length).toBeLessThan(zip.length / 4);
    const uuMsg = messageWith([{ type: 'text/plain; charset=us-ascii', data: text, encoding: '7bit' }]);
    const r = await stage.run(testTransaction(uuMsg, { bank }), never);
    expect(r.findings.map((f) => f.code)).toContain('BANNED_FILE');
    expect(memory.peak).toBeGreaterThanOrEqual(zip.length);
    expect(memory.inUse).toBe(0);
  });

  it('keeps four concurrent messages of zips of zips within the budget, all checked', async () => {
    // One message holds its 4 MiB part (base64 of a 3 MiB zip) and a 1 MiB inner zip: one at a time fits.
    const memory = new ByteBudget(8 * MiB, 10_000);
    const stage = stageFor(bannedStage, bank, { ...testStageDeps({ server: '127.0.0.1:9' }), unpackMemory: memory });
    const runs = await Promise.all([0, 1, 2, 3].map(() => stage.run(testTransaction(msg, { bank }), never)));
    for (const r of runs) expect(r.findings).toEqual([]);
    expect(memory.peak).toBeLessThanOrEqual(8 * MiB);
    expect(memory.peak).toBeGreaterThan(4 * MiB);
    expect(memory.inUse).toBe(0);
  });
});
