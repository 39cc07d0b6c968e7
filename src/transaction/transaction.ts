/**
 * One mail transaction: the envelope as the upstream gave it (with its ESMTP parameters,
 * RFC 1652, 3461, 6531), what XFORWARD told us about the original client, the bank it
 * arrived on, and the message. Stages read it; the runner swaps in rewritten messages.
 */
import type { Bank } from '../config/bank-schema';
import type { Message } from './message';

/**
 * Addresses and parameter values are kept exactly as the upstream wrote them (quoted local
 * parts, A-labels, xtext) and sent downstream unchanged (lib/envelope/commands.ts says why).
 */
export interface Recipient {
  /** The forward-path between < and >, as written. */
  readonly address: string;
  /** DSN NOTIFY (RFC 3461) as written, e.g. "SUCCESS,FAILURE". */
  readonly notify?: string;
  /** DSN ORCPT as written: addr-type ";" xtext, still encoded. */
  readonly orcpt?: string;
}

export interface Envelope {
  /** The reverse-path between < and > as written; empty for the null sender <>. */
  readonly mailFrom: string;
  readonly body?: '7BIT' | '8BITMIME';
  readonly smtputf8: boolean;
  readonly ret?: 'FULL' | 'HDRS';
  /** DSN ENVID as written, still xtext. */
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
