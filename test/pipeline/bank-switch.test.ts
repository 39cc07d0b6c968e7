/**
 * A stage that asks for another bank (signer-based policy): the run goes on with that bank's
 * stages that have not run yet, and that bank's settings make the verdict.
 */
import type { Bank } from '../../src/config/bank-schema';
import { createPipeline, type Pipeline } from '../../src/pipeline/runner';
import type { Stage, StageFactory } from '../../src/pipeline/stage';
import { loadTestBank } from '../helpers/banks';
import { testAuthDeps, testStageDeps, testTransaction } from '../helpers/stage-run';
import type { DnsServer } from '../helpers/dns-server';

const auth = testAuthDeps({ server: '127.0.0.1:9' } as DnsServer);

function build(bank: Bank, ran: string[], stages: Partial<Record<Stage['id'], Partial<Stage>>>, others: Record<string, Pipeline> = {}) {
  const factory =
    (id: Stage['id']): StageFactory =>
    () => ({
      id,
      run: async () => {
        ran.push(id);
        return { findings: [] };
      },
      ...stages[id],
    });
  const factories = Object.fromEntries(bank.stages.map((id) => [id, factory(id)])) as Record<Stage['id'], StageFactory>;
  return createPipeline(bank, testStageDeps(auth), factories, (name) => others[name]);
}

test("the other bank's stages that have not run yet follow, and its verdict counts", async () => {
  const ran: string[] = [];
  const strict = loadTestBank({ stages: ['loop-guard', 'dkim-verify', 'header-sanity'], headerSanity: { missingFrom: 'reject' } });
  const lenient = loadTestBank({ stages: ['loop-guard', 'dkim-verify', 'authentication-results'], headerSanity: { missingFrom: 'pass' } });
  const trusting = build(lenient, ran, {});
  const switching = {
    run: async () => {
      ran.push('dkim-verify');
      return { findings: [{ code: 'HEADER_SANITY_MISSING_FROM' as const }], bank: 'TRUSTED' };
    },
  };
  const result = await build(strict, ran, { 'dkim-verify': switching }, { TRUSTED: trusting }).run(testTransaction('Subject: x\r\n\r\nx\r\n'), new AbortController().signal);
  expect(ran).toEqual(['loop-guard', 'dkim-verify', 'authentication-results']);
  expect(result.verdict.action).toBe('pass');
});

test('an unknown bank is logged and the run stays on its own bank', async () => {
  const ran: string[] = [];
  const bank = loadTestBank({ stages: ['loop-guard', 'header-sanity'] });
  const result = await build(bank, ran, {
    'loop-guard': {
      run: async () => {
        ran.push('loop-guard');
        return { findings: [], bank: 'NOPE' };
      },
    },
  }).run(testTransaction('From: a@b.example\r\n\r\nx\r\n'), new AbortController().signal);
  expect(ran).toEqual(['loop-guard', 'header-sanity']);
  expect(result.verdict.action).toBe('pass');
});
