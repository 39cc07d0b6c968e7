/**
 * Runs one stage on a message outside the listener, with its dependencies pointed at a
 * loopback DNS server, and returns its outcome and the typed results it handed on.
 */
import pino from 'pino';
import type { Bank } from '../../src/config/bank-schema';
import { emptyKeyStore } from '../../src/keys/key-store';
import { DkimKeyCache } from '../../src/lib/dkim/public-keys';
import { createDnsResolver } from '../../src/lib/dns';
import { NO_RESULTS, ResultSet, type ResultKey, type Results } from '../../src/lib/results';
import { compileRules, settingsOf } from '../../src/pipeline/runner';
import { stageRegistry } from '../../src/stages/registry';
import type { Stage, StageDefinition, StageDeps, StageOutcome } from '../../src/pipeline/stage';
import { dmarcResultsNotKept } from '../../src/store/dmarc-results';
import { Message } from '../../src/transaction/message';
import { memorySpool } from '../../src/transaction/spool';
import type { ClientInfo, Transaction } from '../../src/transaction/transaction';
import { loadTestBank } from './banks';
import type { DnsServer } from './dns-server';

/**
 * Stage dependencies with a resolver on `dns` (no cache, no retries) and nothing kept. The
 * default timeout is long enough for a loaded CI machine (300 ms once made a loopback answer
 * a temperror); tests of timeouts pass their own.
 */
export function testStageDeps(dns: Pick<DnsServer, 'server'>, opts: { timeoutMs?: number; bankName?: string } = {}): StageDeps {
  return {
    hostname: 'filter.test',
    authservId: 'filter.test',
    bankName: opts.bankName ?? 'default',
    log: pino({ level: 'silent' }),
    spool: { dir: '', memoryThresholdBytes: 0 },
    keys: emptyKeyStore,
    resolver: createDnsResolver({ servers: [dns.server], timeoutMs: opts.timeoutMs ?? 2000, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 }),
    dkimKeys: new DkimKeyCache(),
    dmarcStore: dmarcResultsNotKept,
  };
}

/** The stage as a bank with `overlay` (validated by the real schema) makes it. */
export function makeStage<S>(def: StageDefinition<S>, deps: StageDeps, overlay: Record<string, unknown> = {}): Stage {
  const bank = loadTestBank(overlay);
  return def.create(settingsOf(def, bank), bank, deps);
}

export async function runStage<S>(def: StageDefinition<S>, tx: Transaction, deps: StageDeps, overlay: Record<string, unknown> = {}, before: Results = NO_RESULTS) {
  const outcome = await makeStage(def, deps, overlay).run(tx, new AbortController().signal, before);
  return { outcome, results: resultsAfter(outcome, before) };
}

/** What the stages after this one would read: the results before it, and its own on top. */
export function resultsAfter(outcome: StageOutcome, before: Results = NO_RESULTS): Results {
  const set = new ResultSet();
  set.add(outcome.results);
  return { get: <T>(key: ResultKey<T>) => set.get(key) ?? before.get(key) };
}

export function testTransaction(data: string | Buffer, opts: { bank?: Bank; mailFrom?: string; client?: ClientInfo } = {}): Transaction {
  return {
    id: 'test.1',
    bankName: 'default',
    bank: opts.bank ?? loadTestBank({}),
    envelope: { mailFrom: opts.mailFrom ?? '', smtputf8: false, recipients: [{ address: 'bob@example.net' }] },
    client: opts.client ?? {},
    peerAddress: '127.0.0.1',
    receivedAt: new Date(),
    message: Message.parse(memorySpool(Buffer.isBuffer(data) ? data : Buffer.from(data))),
  };
}

/** A stage built for `bank` whose run takes the results of earlier stages, none by default. */
export function stageFor<S>(def: StageDefinition<S>, bank: Bank, deps: StageDeps) {
  const stage = def.create(settingsOf(def, bank), bank, deps);
  return { id: stage.id, run: (tx: Transaction, signal: AbortSignal, results: Results = NO_RESULTS) => stage.run(tx, signal, results) };
}

/** Every registered stage's verdict rules for `bank`, as the runner compiles them. */
export function rulesOf(bank: Bank) {
  return compileRules(stageRegistry, bank, 'filter.test');
}
