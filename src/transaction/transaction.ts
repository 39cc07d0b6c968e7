/**
 * One mail transaction: the envelope as the upstream gave it (with its ESMTP parameters,
 * RFC 1652, 3461, 6531), what XFORWARD told us about the original client, the bank it
 * arrived on, and the message. Stages read it; the runner swaps in rewritten messages.
 */
import type { Bank } from '../config/bank-schema';
import type { Message } from './message';

export interface Recipient {
  readonly address: string;
  /** DSN NOTIFY values (RFC 3461), upper case. */
  readonly notify?: readonly string[];
  /** DSN ORCPT value as received (addr-type;xtext). */
  readonly orcpt?: string;
}

export interface Envelope {
  /** Empty string for the null sender <>. */
  readonly mailFrom: string;
  readonly body?: '7BIT' | '8BITMIME' | 'BINARYMIME';
  readonly smtputf8: boolean;
  readonly ret?: 'FULL' | 'HDRS';
  readonly envid?: string;
  readonly recipients: readonly Recipient[];
}

/** XFORWARD attributes (Postfix XFORWARD_README), only from trusted peers. */
export interface ClientInfo {
  readonly name?: string;
  readonly addr?: string;
  readonly port?: string;
  readonly proto?: string;
  readonly helo?: string;
  readonly ident?: string;
  readonly source?: string;
}

export interface Transaction {
  /** smtp-server session id plus the transaction's number in the session. */
  readonly id: string;
  readonly bankName: string;
  readonly bank: Bank;
  readonly envelope: Envelope;
  readonly client: ClientInfo;
  /** The upstream Postfix queue id (XFORWARD IDENT), for the log. */
  readonly queueId?: string;
  /** The address the connection really came from. */
  readonly peerAddress: string;
  readonly receivedAt: Date;
  message: Message;
}
