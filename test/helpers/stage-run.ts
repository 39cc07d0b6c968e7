/**
 * Runs one stage on a message outside the listener, with the authentication dependencies
 * pointed at a loopback DNS server, and returns its outcome and what it recorded.
 */
import pino from 'pino';
import type { Bank } from '../../src/config/bank-schema';
import { createAuthDeps, type AuthDeps } from '../../src/lib/authentication-results';
import type { StageDeps, StageFactory } from '../../src/pipeline/stage';
import { Message } from '../../src/transaction/message';
import { memorySpool } from '../../src/transaction/spool';
import type { ClientInfo, Transaction } from '../../src/transaction/transaction';
import { loadTestBank } from './banks';
import type { DnsServer } from './dns-server';

export function testAuthDeps(dns: DnsServer, timeoutMs = 300): AuthDeps {
  return createAuthDeps({ servers: [dns.server], timeoutMs, retries: 0, cacheMaxEntries: 0, cacheMaxTtlSec: 0 });
}

/** Only what the authentication stages read; other stages' dependencies are not needed here. */
export function testStageDeps(auth: AuthDeps, bankName = 'default'): StageDeps {
  return {
    hostname: 'filter.test',
    authservId: 'filter.test',
    bankName,
    log: pino({ level: 'silent' }),
    spool: { dir: '', memoryThresholdBytes: 0 },
    auth,
  } as Partial<StageDeps> as StageDeps;
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

export async function runStage(factory: StageFactory, tx: Transaction, auth: AuthDeps, bankOverlay: Record<string, unknown> = {}) {
  const bank = loadTestBank(bankOverlay);
  const outcome = await factory(bank, testStageDeps(auth)).run(tx, new AbortController().signal);
  return { outcome, recorded: auth.board.of(tx) };
}
