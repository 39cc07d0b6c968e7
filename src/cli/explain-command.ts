/**
 * `postseal explain --bank B FILE`: the answer to "why isn't it signing?" and "which key
 * signs this?". Prints the bank's part, the author, the signing table rule and the state of
 * each of its keys, the signature options, and the result: signed with which keys, or the
 * reason it would go unsigned (not_originating, no_dkim_sign_stage, no_from, multiple_from,
 * no_author_domain, no_key_for_domain, no_active_key) and what the bank then does with it.
 * The decision is the dkim-sign stage's own (stages/dkim-sign/decide.ts), on the message as
 * given (before seven-bit, which changes no field that decides).
 */
import { createReadStream } from 'node:fs';
import os from 'node:os';
import type { Bank } from '../config/bank-schema';
import type { KeyStore } from '../keys/key-store';
import { signedHeaderNames } from '../lib/dkim/signature';
import { compileRules, settingsOf } from '../pipeline/runner';
import { decide } from '../pipeline/verdict';
import { dkimSignStage } from '../stages/dkim-sign';
import { decideSigning, type SigningDecision, type UnsignedReason } from '../stages/dkim-sign/decide';
import { Message } from '../transaction/message';
import { spoolFrom } from '../transaction/spool';
import { loadOrExplain, parse, UsageError, withUsage } from './args';
import { bankChain } from './bank-chain';

const help = `Usage: postseal explain [--config FILE] [--bank NAME] [--client-ip IP] [--mail-from ADDR] FILE|-

Says whether the bank (default: ORIGINATING) would DKIM-sign the message in FILE (- for
standard input), with which signing table rule and keys, and why; or why not:
not_originating, no_dkim_sign_stage, no_from, multiple_from, no_author_domain,
no_key_for_domain, no_active_key (the rule's keys are staged or retiring).
  --client-ip IP    the client address: the bank rules (bankRules) run from the listener of
                    --bank, as at MAIL FROM, and the bank they end on is explained
  --mail-from ADDR  the envelope sender, for the sender rules of bankRules and for banks
                    with dkimSign.envelopeSenderFallback
Exit status: 0 it would be signed, 1 it would not (or FILE or the config could not be read).`;

const why: Record<UnsignedReason | 'not_originating' | 'no_dkim_sign_stage', string> = {
  not_originating: 'only mail of our own users is signed: banks with originating: true (ORIGINATING, NOCHECKS)',
  no_dkim_sign_stage: 'the bank does not list dkim-sign in its stages',
  no_from: 'the message has no From field, which DKIM always signs (RFC 6376 5.4)',
  multiple_from: 'the message has several From fields; DKIM cannot sign it',
  no_author_domain: 'the From field holds no usable address (a group, no domain, or addresses of different domains)',
  no_key_for_domain: 'no signing table rule for the author domain or a parent of it (*.parent)',
  no_active_key: 'the rule has no active key (staged keys sign after postseal keys activate; retiring keys no longer sign)',
};

export function runExplain(args: string[]): Promise<number> {
  return withUsage(async () => {
    const {
      values,
      positionals,
      help: h,
    } = parse(
      args,
      { config: { type: 'string', short: 'c' }, bank: { type: 'string', default: 'ORIGINATING' }, 'client-ip': { type: 'string' }, 'mail-from': { type: 'string' } },
      help,
    );
    if (h) {
      process.stdout.write(`${h}\n`);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError(`explain needs one message file (or - for standard input)\n\n${help}`);
    const config = loadOrExplain(values.config);
    if (!config) return 1;
    if (!config.banks.has(values.bank)) throw new UsageError(`no bank "${values.bank}"; banks: ${[...config.banks.keys()].join(', ')}`);
    const mailFrom = values['mail-from'] ?? '';
    // Without a client or a sender given, no rule is run: --bank is explained as it is.
    const chain = values['client-ip'] !== undefined || values['mail-from'] !== undefined ? bankChain(config, values.bank, values['client-ip'], mailFrom) : null;
    const bankName = chain?.choice.bank ?? values.bank;
    const bank = config.banks.get(bankName)!;
    let message: Message;
    try {
      const source = positionals[0] === '-' ? process.stdin : createReadStream(positionals[0]);
      message = Message.parse(
        await spoolFrom(source, {
          dir: config.main.spool.dir || os.tmpdir(),
          memoryThresholdBytes: config.main.spool.memoryThresholdBytes,
          headBytes: config.main.spool.maxHeaderBytes,
          maxSizeBytes: bank.maxMessageSizeBytes,
        }),
      );
    } catch (err) {
      process.stderr.write(`postseal: cannot read ${positionals[0]}: ${(err as Error).message}\n`);
      return 1;
    }
    try {
      const out = [...(chain ? [chain.text] : []), `bank ${bankName}: ${bank.originating ? 'originating' : 'not originating'}, stages: ${bank.stages.join(', ') || 'none'}`];
      if (!bank.originating) return report(out, `not signed: not_originating: ${why.not_originating}`, 1);
      if (!bank.stages.includes('dkim-sign')) return report(out, `not signed: no_dkim_sign_stage: ${why.no_dkim_sign_stage}`, 1);
      const decision = decideSigning(message, mailFrom, settingsOf(dkimSignStage, bank), config.keys);
      out.push(...describe(decision, config.keys, bank));
      if (decision.sign) {
        const o = decision.options;
        const signedNames = signedHeaderNames(message.fields, o.signedHeaderFields, o.oversignedHeaderFields).join(':');
        out.push(
          `options: c=${o.canonicalization}${o.timestamp ? ' t=now' : ''}${o.ttlSeconds ? ` x=t+${o.ttlSeconds}s` : ''} i=${o.identity} l=${o.bodyLength ? 'yes' : 'no'} h=${signedNames}`,
        );
        return report(out, `signed: ${decision.keys.map((k) => `d=${k.domain} s=${k.selector} ${k.algorithm}`).join(', ')}`, 0);
      }
      const verdict = decide([decision.finding], compileRules([dkimSignStage], bank, config.authservId));
      const then = verdict.action === 'pass' ? 'passed on unsigned' : `${verdict.action}: ${verdict.reply.code} ${verdict.reply.enhanced} ${verdict.reply.text}`;
      return report(
        out,
        `not signed: ${decision.reason}: ${why[decision.reason]} (${decision.finding.code}${decision.finding.detail ? ` ${decision.finding.detail}` : ''}); ${then}`,
        1,
      );
    } finally {
      await message.spool.dispose();
    }
  });
}

function describe(d: SigningDecision, store: KeyStore, bank: Bank): string[] {
  const lines: string[] = [];
  if (d.signer) {
    lines.push(`author: ${d.signer.address}${d.author ? ' (From)' : ' (envelope sender: dkimSign.envelopeSenderFallback)'}`);
  } else if (!d.sign && d.reason === 'no_author_domain' && !settingsOf(dkimSignStage, bank).envelopeSenderFallback) {
    lines.push('author: none (dkimSign.envelopeSenderFallback: true would look up the envelope sender domain)');
  }
  if (d.rule) {
    const nearest = d.rule.author.startsWith('*.') ? ` (no rule for ${d.signer!.domain} itself; the nearest parent rule)` : '';
    lines.push(`rule: ${store.files!.signingTableFile} /${d.rule.index}: ${d.rule.author}${nearest}`);
    for (const k of d.rule.keys) lines.push(`  key ${k.name}: d=${k.domain} s=${k.selector} ${k.algorithm}, ${k.state}: ${k.state === 'active' ? 'signs' : 'does not sign'}`);
  }
  return lines;
}

function report(lines: string[], result: string, code: number): number {
  process.stdout.write(`${[...lines, `result: ${result}`].join('\n')}\n`);
  return code;
}
