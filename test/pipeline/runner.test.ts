import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import type { Bank } from '../../src/config/bank-schema';
import { isPostsealError } from '../../src/errors';
import { emptyKeyStore } from '../../src/keys/key-store';
import { createPipeline, orderStages } from '../../src/pipeline/runner';
import { defineStage, type Phase, type RegisteredStage, type Stage } from '../../src/pipeline/stage';
import { stageRegistry } from '../../src/stages/registry';
import { ResultKey } from '../../src/lib/results';
import { Message } from '../../src/transaction/message';
import { memorySpool, spoolFrom } from '../../src/transaction/spool';
import type { Transaction } from '../../src/transaction/transaction';
import { loadTestBank } from '../helpers/banks';
import { testStageDeps } from '../helpers/stage-run';

/** A registered stage's definition (its phase, findings, rules) with `run` in place of its own. */
const stage = (id: string, run: Stage['run'] = async () => ({ findings: [] })): RegisteredStage => ({ ...stageRegistry.find((d) => d.id === id)!, create: () => ({ id, run }) });
/** A made-up stage, for ordering. */
const made = (id: string, phase: Phase, after: string[] = []): RegisteredStage =>
  defineStage<never, never>({ id, phase, after, findings: [], create: () => ({ id, run: async () => ({ findings: [] }) }) });
const deps = { ...testStageDeps({ server: '127.0.0.1:9' }), authservId: 'h', keys: emptyKeyStore };

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

function pipelineWith(bank: Bank, stages: Record<string, RegisteredStage>) {
  return createPipeline('default', bank, Object.values(stages), deps);
}

describe('pipeline runner', () => {
  it('orders stages by their after declarations, bank order breaking ties', () => {
    expect(orderStages([made('b', 'check', ['a']), made('a', 'check'), made('c', 'check')]).map((s) => s.id)).toEqual(['a', 'b', 'c']);
  });

  it('orders by phase first: check, edit, sign, seal, whatever the bank lists first', () => {
    expect(orderStages([made('seal', 'seal'), made('sign', 'sign'), made('edit', 'edit'), made('check', 'check')]).map((s) => s.id)).toEqual(['check', 'edit', 'sign', 'seal']);
    const shipped = ['arc-seal', 'dkim-sign', 'seven-bit', 'authentication-results', 'dmarc', 'arc-verify', 'spf', 'dkim-verify', 'header-sanity', 'loop-guard'];
    expect(orderStages(shipped.map((id) => stageRegistry.find((d) => d.id === id)!)).map((s) => s.id)).toEqual([
      'loop-guard',
      'header-sanity',
      'arc-verify',
      'spf',
      'dkim-verify',
      'dmarc',
      'seven-bit',
      'authentication-results',
      'dkim-sign',
      'arc-seal',
    ]);
  });

  it('refuses a cycle, and an after on a later phase, at start-up with STAGE_ORDER_CYCLE', () => {
    for (const defs of [
      [made('b', 'check', ['a']), made('a', 'check', ['b'])],
      [made('a', 'check', ['z']), made('z', 'edit')],
    ]) {
      let err: unknown;
      try {
        orderStages(defs);
      } catch (e) {
        err = e;
      }
      expect(isPostsealError(err, 'STAGE_ORDER_CYCLE')).toBe(true);
    }
  });

  it('a stage that throws makes the verdict a 451 4.3.0 tempfail', async () => {
    const bank = loadTestBank({ stages: ['loop-guard'] });
    const p = pipelineWith(bank, {
      'loop-guard': stage('loop-guard', async () => {
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
    const never = stage('loop-guard', () => new Promise(() => undefined));
    const r = await pipelineWith(bank, { 'loop-guard': never, 'header-sanity': stage('header-sanity') }).run(tx(bank), AbortSignal.timeout(50));
    expect(r.verdict).toMatchObject({ action: 'tempfail', reason: 'DEADLINE_EXCEEDED', reply: { enhanced: '4.4.7' } });
  });

  it('a stage that returns a rewritten spool after its timeout has that spool file removed', async () => {
    const bank = loadTestBank({ stages: ['loop-guard'], timeouts: { stageTimeoutMs: 100 } });
    const dir = mkdtempSync(path.join(tmpdir(), 'runner-late-'));
    let returned!: Promise<unknown>;
    // Ignores its signal, as a stage caught in a slow read would, and rewrites the message into a spool file.
    const late = stage('loop-guard', () => {
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
      'loop-guard': stage('loop-guard', async () => ({ findings: [{ code: 'LOOP_GUARD_TRACE_SEEN' }] })),
      'header-sanity': stage('header-sanity', async () => {
        ran = true;
        return { findings: [] };
      }),
    });
    const r = await p.run(tx(bank), new AbortController().signal);
    expect(r.verdict).toMatchObject({ action: 'reject', reply: { code: '554', enhanced: '5.4.6' } });
    expect(ran).toBe(false);
  });

  it('a header rule (dmarc onQuarantine: header) delivers the message with its field on top, and a later reject still wins', async () => {
    const bank = loadTestBank({ stages: ['loop-guard', 'dmarc'], dmarc: { onQuarantine: 'header' } });
    const marked = {
      'loop-guard': stage('loop-guard'),
      dmarc: stage('dmarc', async () => ({ findings: [{ code: 'DMARC_FAIL_QUARANTINE', detail: 'example.com p=quarantine' }] })),
    };
    const t = tx(bank);
    const r = await pipelineWith(bank, marked).run(t, new AbortController().signal);
    expect(r.verdict).toMatchObject({ action: 'tag', reason: 'DMARC_FAIL_QUARANTINE', reply: { code: '250' } });
    expect(t.message.fields[0].raw.toString()).toBe('X-Postseal-Quarantine: DMARC policy example.com p=quarantine (h)\r\n');
    const rejected = { ...marked, 'loop-guard': stage('loop-guard', async () => ({ findings: [{ code: 'LOOP_GUARD_TOO_MANY_HOPS' }] })) };
    const t2 = tx(bank);
    const r2 = await pipelineWith(bank, rejected).run(t2, new AbortController().signal);
    expect(r2.verdict.action).toBe('reject');
    expect(t2.message.get('x-postseal-quarantine')).toEqual([]);
  });

  it('a quarantine verdict leaves the message as received: later checks still run, edits and signing do not', async () => {
    const bank = loadTestBank({ stages: ['loop-guard', 'dmarc', 'header-sanity', 'authentication-results'], dmarc: { onQuarantine: 'quarantine' } });
    const ran: string[] = [];
    const track = (id: string, findings: { code: string; detail?: string }[] = []) =>
      stage(id, async () => {
        ran.push(id);
        return { findings };
      });
    const stages = {
      'loop-guard': track('loop-guard'),
      dmarc: track('dmarc', [{ code: 'DMARC_FAIL_QUARANTINE', detail: 'example.com p=quarantine' }]),
      'header-sanity': track('header-sanity'),
      'authentication-results': track('authentication-results'),
    };
    const t = tx(bank);
    const received = t.message;
    const r = await pipelineWith(bank, stages).run(t, new AbortController().signal);
    expect(r.verdict).toMatchObject({ action: 'quarantine', reason: 'DMARC_FAIL_QUARANTINE', fields: [] });
    expect(ran).toEqual(['loop-guard', 'dmarc', 'header-sanity']);
    expect(t.message).toBe(received);
  });

  it('hands each stage the typed results of the stages before it', async () => {
    const bank = loadTestBank({ stages: ['loop-guard', 'header-sanity'] });
    const KEY = new ResultKey<{ n: number }>('test');
    let seen: { n: number } | undefined;
    const p = pipelineWith(bank, {
      'loop-guard': stage('loop-guard', async () => ({ findings: [], results: [KEY.entry({ n: 7 })] })),
      'header-sanity': stage('header-sanity', async (_t, _s, results) => {
        seen = results.get(KEY);
        return { findings: [] };
      }),
    });
    await p.run(tx(bank), new AbortController().signal);
    expect(seen).toEqual({ n: 7 });
  });
});
