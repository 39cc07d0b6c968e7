import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import pino from 'pino';
import type { Bank } from '../../src/config/bank-schema';
import { isPostsealError } from '../../src/errors';
import { emptyKeyStore } from '../../src/keys/key-store';
import { createAuthDeps } from '../../src/lib/authentication-results';
import { createPipeline, orderStages } from '../../src/pipeline/runner';
import type { Stage, StageFactory } from '../../src/pipeline/stage';
import { Message } from '../../src/transaction/message';
import { memorySpool, spoolFrom } from '../../src/transaction/spool';
import type { Transaction } from '../../src/transaction/transaction';
import { loadTestBank } from '../helpers/banks';

const stage = (id: Stage['id'], after: Stage['id'][] = [], run: Stage['run'] = async () => ({ findings: [] })): Stage => ({ id, after, run });
const deps = {
  hostname: 'h',
  authservId: 'h',
  bankName: 'default',
  log: pino({ level: 'silent' }),
  spool: { dir: '', memoryThresholdBytes: 0 },
  keys: emptyKeyStore,
  auth: createAuthDeps({ servers: [], timeoutMs: 100, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 }),
};

function tx(bank: Bank): Transaction {
  return {
    id: 't1',
    bankName: 'default',
    bank,
    envelope: { mailFrom: '', smtputf8: false, recipients: [] },
    client: {},
    peerAddress: '127.0.0.1',
    receivedAt: new Date(),
    message: Message.parse(memorySpool(Buffer.from('From: a@b\r\n\r\nx\r\n'))),
  };
}

function pipelineWith(bank: Bank, stages: Record<string, Stage>) {
  const factories = Object.fromEntries(Object.entries(stages).map(([id, s]) => [id, (() => s) as StageFactory])) as Record<Stage['id'], StageFactory>;
  return createPipeline(bank, deps, factories);
}

describe('pipeline runner', () => {
  it('orders stages by their after declarations, bank order breaking ties', () => {
    expect(orderStages([stage('header-sanity', ['loop-guard']), stage('loop-guard')]).map((s) => s.id)).toEqual(['loop-guard', 'header-sanity']);
  });

  it('refuses a cycle at start-up with STAGE_ORDER_CYCLE', () => {
    let err: unknown;
    try {
      orderStages([stage('header-sanity', ['loop-guard']), stage('loop-guard', ['header-sanity'])]);
    } catch (e) {
      err = e;
    }
    expect(isPostsealError(err, 'STAGE_ORDER_CYCLE')).toBe(true);
  });

  it('a stage that throws makes the verdict a 451 4.3.0 tempfail', async () => {
    const bank = loadTestBank({ stages: ['loop-guard'] });
    const p = pipelineWith(bank, {
      'loop-guard': stage('loop-guard', [], async () => {
        throw new Error('boom');
      }),
      'header-sanity': stage('header-sanity'),
    });
    const r = await p.run(tx(bank), new AbortController().signal);
    expect(r.verdict).toMatchObject({ action: 'tempfail', reason: 'STAGE_FAILED', reply: { code: '451', enhanced: '4.3.0' } });
  });

  it('a stage that runs past stageTimeoutMs is a STAGE_TIMEOUT tempfail and sees its signal aborted', async () => {
    const bank = loadTestBank({ stages: ['loop-guard'], timeouts: { stageTimeoutMs: 100 } });
    let aborted = false;
    const slow = stage(
      'loop-guard',
      [],
      (_t, signal) =>
        new Promise((resolve) =>
          signal.addEventListener('abort', () => {
            aborted = true;
            resolve({ findings: [] });
          }),
        ),
    );
    const r = await pipelineWith(bank, { 'loop-guard': slow, 'header-sanity': stage('header-sanity') }).run(tx(bank), new AbortController().signal);
    expect(r.verdict.reason).toBe('STAGE_TIMEOUT');
    expect(aborted).toBe(true);
  });

  it('the message deadline ends the run with DEADLINE_EXCEEDED (451 4.4.7)', async () => {
    const bank = loadTestBank({ stages: ['loop-guard'] });
    const never = stage('loop-guard', [], () => new Promise(() => undefined));
    const r = await pipelineWith(bank, { 'loop-guard': never, 'header-sanity': stage('header-sanity') }).run(tx(bank), AbortSignal.timeout(50));
    expect(r.verdict).toMatchObject({ action: 'tempfail', reason: 'DEADLINE_EXCEEDED', reply: { enhanced: '4.4.7' } });
  });

  it('a stage that returns a rewritten spool after its timeout has that spool file removed', async () => {
    const bank = loadTestBank({ stages: ['loop-guard'], timeouts: { stageTimeoutMs: 100 } });
    const dir = mkdtempSync(path.join(tmpdir(), 'runner-late-'));
    let returned!: Promise<unknown>;
    // Ignores its signal, as a stage caught in a slow read would, and rewrites the message into a spool file.
    const late = stage('loop-guard', [], () => {
      const outcome = (async () => {
        await new Promise((r) => setTimeout(r, 300));
        const spool = await spoolFrom(Readable.from([Buffer.from('From: a@b\r\n\r\n'), Buffer.alloc(5000, 0x61)]), { dir, memoryThresholdBytes: 100, maxSizeBytes: Infinity });
        return { findings: [], message: Message.parse(spool) };
      })();
      returned = outcome;
      return outcome;
    });
    const r = await pipelineWith(bank, { 'loop-guard': late, 'header-sanity': stage('header-sanity') }).run(tx(bank), new AbortController().signal);
    expect(r.verdict.reason).toBe('STAGE_TIMEOUT');
    expect(r.spools).toEqual([]);
    await returned;
    for (let i = 0; i < 100 && readdirSync(dir).length > 0; i++) await new Promise((res) => setTimeout(res, 10));
    expect(readdirSync(dir)).toEqual([]);
  });

  it('stops at the first final verdict', async () => {
    const bank = loadTestBank({ stages: ['loop-guard', 'header-sanity'] });
    let ran = false;
    const p = pipelineWith(bank, {
      'loop-guard': stage('loop-guard', [], async () => ({ findings: [{ code: 'LOOP_GUARD_TRACE_SEEN' }] })),
      'header-sanity': stage('header-sanity', [], async () => {
        ran = true;
        return { findings: [] };
      }),
    });
    const r = await p.run(tx(bank), new AbortController().signal);
    expect(r.verdict).toMatchObject({ action: 'reject', reply: { code: '554', enhanced: '5.4.6' } });
    expect(ran).toBe(false);
  });
});
