/**
 * A stage that asks for another bank (signer-based policy): the run goes on with that bank's
 * stages that have not run yet, and that bank's settings make the verdict.
 */
import type { Bank } from '../../src/config/bank-schema';
import { createPipeline, type Pipeline } from '../../src/pipeline/runner';
import type { RegisteredStage, Stage } from '../../src/pipeline/stage';
import { stageRegistry } from '../../src/stages/registry';
import { loadTestBank } from '../helpers/banks';
import { testStageDeps, testTransaction } from '../helpers/stage-run';
import type { DnsServer } from '../helpers/dns-server';

const auth = testStageDeps({ server: '127.0.0.1:9' } as DnsServer);

/** The registered definitions (phases, rules) of the bank's stages, each running `stages[id]` or recording that it ran. */
function build(bank: Bank, ran: string[], stages: Partial<Record<string, Partial<Stage>>>, others: Record<string, Pipeline> = {}, name = 'default') {
  const defs: RegisteredStage[] = bank.stages.map((id) => ({
    ...stageRegistry.find((d) => d.id === id)!,
    create: () => ({
      id,
      run: async () => {
        ran.push(id);
        return { findings: [] };
      },
      ...stages[id],
    }),
  }));
  return createPipeline(name, bank, defs, auth, (other) => others[other]);
}

test("the other bank's stages that have not run yet follow, and its verdict counts", async () => {
  const ran: string[] = [];
  // strict's seven-bit would run after dkim-verify; lenient's authentication-results does instead.
  const strict = loadTestBank({ stages: ['loop-guard', 'header-sanity', 'dkim-verify', 'seven-bit'], headerSanity: { missingFrom: 'reject' } });
  const lenient = loadTestBank({ stages: ['loop-guard', 'header-sanity', 'dkim-verify', 'authentication-results'], headerSanity: { missingFrom: 'pass' } });
  const trusting = build(lenient, ran, {}, {}, 'TRUSTED');
  const switching = {
    run: async () => {
      ran.push('dkim-verify');
      return { findings: [{ code: 'HEADER_SANITY_MISSING_FROM' }], bank: 'TRUSTED' };
    },
  };
  const result = await build(strict, ran, { 'dkim-verify': switching }, { TRUSTED: trusting }).run(testTransaction('Subject: x\r\n\r\nx\r\n'), new AbortController().signal);
  expect(ran).toEqual(['loop-guard', 'header-sanity', 'dkim-verify', 'authentication-results']);
  // lenient's headerSanity.missingFrom decides: strict's would have rejected.
  expect(result.verdict.action).toBe('pass');
  expect(result.bankName).toBe('TRUSTED');
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
