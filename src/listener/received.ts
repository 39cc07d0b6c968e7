/**
 * The Transaction both listeners (the SMTP one, deliver.ts, and the milter, milter/end-of-message.ts)
 * build from a spooled message, so that the pipeline sees mail from either the same way. A header
 * section that did not end within the spool's head is refused here (HEADER_TOO_BIG, 552 5.3.4):
 * fields past the limit would pass every check unseen (a second From, a forged A-R).
 */
import type { Bank } from '../config/bank-schema';
import { PostsealError } from '../errors';
import { Message } from '../transaction/message';
import type { Spool } from '../transaction/spool';
import type { ClientInfo, Envelope, Transaction } from '../transaction/transaction';

export interface ReceivedInput {
  readonly id: string;
  readonly bankName: string;
  readonly envelope: Envelope;
  readonly client: ClientInfo;
  readonly peer: string;
}

export function receivedTransaction(input: ReceivedInput, bank: Bank, spool: Spool): Transaction {
  const tx: Transaction = {
    id: input.id,
    bankName: input.bankName,
    bank,
    envelope: input.envelope,
    client: input.client,
    queueId: input.client.ident,
    peerAddress: input.peer,
    receivedAt: new Date(),
    message: Message.parse(spool),
  };
  if (!tx.message.headerComplete) throw new PostsealError('HEADER_TOO_BIG', `header section longer than ${spool.head.length} bytes`);
  return tx;
}
