/**
 * `postseal verify`: runs the inbound checks (dkim-verify, spf, dmarc, arc-verify) on one
 * message, as the default bank would, and prints the Authentication-Results field it would
 * add, then one JSON line per DKIM signature. For postmasters asking "why did this fail?".
 * Exit 0 when the checks ran (whatever they found), 1 when the message or the config could
 * not be read, 2 on a usage error.
 */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { validateBank } from '../config/load';
import { DKIM_RESULTS } from '../lib/authentication-results';
import { DkimKeyCache } from '../lib/dkim/public-keys';
import { createDnsResolver } from '../lib/dns';
import { createLogger } from '../lib/log';
import { createPipeline } from '../pipeline/runner';
import { buildStageDeps } from '../setup';
import { AUTHENTICATION_RESULTS } from '../stages/authentication-results';
import { bankSchema, stageRegistry } from '../stages/registry';
import { dmarcResultsNotKept } from '../store/dmarc-results';
import { Message } from '../transaction/message';
import { spoolFrom } from '../transaction/spool';
import type { Transaction } from '../transaction/transaction';
import { loadOrExplain, parse, UsageError, withUsage } from './args';

const help = `Usage: postseal verify [--config FILE] [--bank NAME] [--dns HOST:PORT]
                      [--client-ip IP --helo NAME --mail-from ADDR] [--authserv-id ID] FILE|-

Runs DKIM, SPF, DMARC and ARC on the message in FILE (- for standard input) with the
settings of the bank (default: default) and prints the Authentication-Results field postseal
would add, then one JSON line per DKIM signature: {"d":..,"s":..,"a":..,"result":..,"reason":..}.
  --dns HOST:PORT   ask this DNS server instead of dns.servers of the config
  --client-ip, --helo, --mail-from
                    the SMTP client and envelope sender for SPF (what Postfix passes with
                    XFORWARD); without --client-ip SPF is not evaluated (spf=none)
Exit status: 0 when the checks ran, 1 if the message or the config could not be read.`;

const checks = ['dkim-verify', 'spf', 'dmarc', 'arc-verify', 'authentication-results'];

export function runVerify(args: string[]): Promise<number> {
  return withUsage(async () => {
    const {
      values,
      positionals,
      help: h,
    } = parse(
      args,
      {
        config: { type: 'string', short: 'c' },
        bank: { type: 'string', default: 'default' },
        dns: { type: 'string' },
        'client-ip': { type: 'string' },
        helo: { type: 'string' },
        'mail-from': { type: 'string', default: '' },
        'authserv-id': { type: 'string' },
      },
      help,
    );
    if (h) {
      process.stdout.write(`${h}\n`);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError(`verify needs one message file (or - for standard input)\n\n${help}`);
    const config = loadOrExplain(values.config);
    if (!config) return 1;
    const configured = config.banks.get(values.bank);
    if (!configured) throw new UsageError(`no bank "${values.bank}"; banks: ${[...config.banks.keys()].join(', ')}`);
    // Tag only, so that a DMARC reject does not stop the run before the A-R field is written;
    // validated like a bank file, so the variant cannot be one the daemon would refuse.
    const bank = validateBank(
      bankSchema,
      { ...configured, originating: false, stages: checks, dmarc: { ...(configured.dmarc as object), onReject: 'tag', onTempError: 'tag' } },
      `bank ${values.bank} (verify)`,
    );
    const dns = values.dns ? { ...config.main.dns, servers: [values.dns] } : config.main.dns;
    const shared = { resolver: createDnsResolver(dns), dmarcStore: dmarcResultsNotKept };
    const deps = buildStageDeps({ ...config, authservId: values['authserv-id'] ?? config.authservId }, shared, values.bank, createLogger('silent'), new DkimKeyCache());
    let message: Message;
    try {
      message = Message.parse(await spoolFrom(input(positionals[0]), { ...deps.spool, maxSizeBytes: bank.maxMessageSizeBytes }));
    } catch (err) {
      process.stderr.write(`postseal: cannot read ${positionals[0]}: ${(err as Error).message}\n`);
      return 1;
    }
    const tx: Transaction = {
      id: 'verify',
      bankName: values.bank,
      bank,
      envelope: { mailFrom: values['mail-from'], smtputf8: false, recipients: [] },
      client: { addr: values['client-ip'], helo: values.helo },
      peerAddress: '127.0.0.1',
      receivedAt: new Date(),
      message,
    };
    try {
      const { results } = await createPipeline(values.bank, bank, stageRegistry, deps).run(tx, AbortSignal.timeout(bank.timeouts.messageDeadlineMs));
      const ar = tx.message.get(AUTHENTICATION_RESULTS)[0];
      process.stdout.write(ar.raw.toString('utf8'));
      for (const s of results.get(DKIM_RESULTS) ?? []) {
        process.stdout.write(
          `${JSON.stringify({ d: s.d, s: s.s, a: s.a, result: s.result, reason: s.reason, ...(s.testing ? { testing: true } : {}), ...(s.comment ? { comment: s.comment } : {}) })}\n`,
        );
      }
    } finally {
      await message.spool.dispose();
    }
    return 0;
  });
}

function input(name: string): Readable {
  return name === '-' ? process.stdin : createReadStream(name);
}
