/**
 * The bank chain of `postseal config print` and `postseal explain` for a given client address
 * and envelope sender: the listener port's bank, then the bankRules of the main config
 * (config/bank-rules.ts), each step with the rule that chose it. The daemon decides the same
 * way at MAIL FROM (listener/session.ts).
 */
import { isIP } from 'node:net';
import type { BankChoice } from '../config/bank-rules';
import type { LoadedConfig } from '../setup';
import { UsageError } from './args';

/** `listenerBank` picks the listener (its first port); `clientIp` undefined skips the network rules. */
export function bankChain(config: LoadedConfig, listenerBank: string, clientIp: string | undefined, mailFrom: string): { choice: BankChoice; text: string } {
  if (clientIp !== undefined && isIP(clientIp) === 0) throw new UsageError(`--client-ip "${clientIp}" is not an IPv4 or IPv6 address`);
  const listener = config.main.listeners.find((l) => l.bank === listenerBank);
  const choice = config.bankChooser.choose({ port: listener?.port ?? 0, bank: listenerBank }, clientIp, mailFrom);
  const first = listener ? choice.steps[0] : { bank: listenerBank, rule: 'no listener (bank given)' };
  const steps = [first, ...choice.steps.slice(1)].map((s) => `${s.rule} -> ${s.bank}`);
  const client = clientIp === undefined ? 'client unknown' : `client ${clientIp}`;
  const sender = mailFrom === '' ? 'sender <>' : `sender ${mailFrom}`;
  return { choice, text: `bank chain (${client}, ${sender}): ${steps.join('; ')}; a valid DKIM signer may switch later (dkimVerify.signerBanks)` };
}
