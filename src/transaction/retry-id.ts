/**
 * The id of a message that stays the same when Postfix retries its delivery: sha256 over the
 * queue id, bank, envelope, client and message bytes (not our session id). The quarantine id
 * (quarantine/quarantine.ts), and what notify/bounce.ts and notify/notices.ts remember a sent
 * DSN or notice by, so that a retry after a lost reply does nothing twice.
 */
import { createHash } from 'node:crypto';
import type { ClientInfo, Envelope } from './transaction';

export interface RetryStableInput {
  readonly queueId?: string;
  readonly bank: string;
  readonly envelope: Envelope;
  readonly client: ClientInfo;
  /** The message exactly as received. */
  readonly raw: () => AsyncIterable<Buffer>;
}

/**
 * sha256 over what a Postfix retry sends again (see the header), 24 hex digits (96 bits): the
 * quarantine id, and what notify/bounce.ts remembers a sent DSN by.
 */
export async function retryStableId(input: RetryStableInput): Promise<string> {
  const h = createHash('sha256');
  h.update(JSON.stringify([input.queueId ?? null, input.bank, input.envelope, input.client]));
  h.update('\n');
  for await (const chunk of input.raw()) h.update(chunk);
  return h.digest('hex').slice(0, 24);
}
