/**
 * banned: amavisd-new's banned-files check. Every MIME part and every member of the zip, tar
 * and gzip archives and winmail.dat (TNEF) attachments in it, and of RAR, 7z, cab, xz, bzip2, ISO and BinHex ones when unar is on
 * (deps.unpacker, decoders), recursively within the limits, is described by its path, declared
 * names and types and the type its bytes show (lib/mime/parts.ts, lib/archive/), and weighed
 * by the bank's ordered allow/deny rules (rules.ts, amavisd `$banned_filename_re`); file names
 * with bidi or invisible characters, encrypted members and archives that a cap stopped or that
 * are damaged are findings the settings weigh (inspect.ts).
 *
 * Findings: BANNED_FILE (detail "[<kind>] part <path> ... rule <n> ..."; the bank's destiny
 * applies: reject = 554 5.7.0 "banned content (<kind>)", bounce, quarantine, discard, pass), BANNED_FILE_LOVED (every recipient
 * is in `lovers`: delivered with X-Postseal-Alert), BANNED_FILE_MORE (every banned part after
 * the first, for the log), BANNED_UNCHECKED (a part too big to look into, onTooLarge unchecked:
 * delivered with X-Postseal-Alert: UNCHECKED), BANNED_BUSY (the process-wide unpacking memory
 * stayed full, lib/archive/memory.ts: 451 4.3.1, Postfix retries), BANNED_BYPASSED (every recipient is in `bypass`: nothing checked),
 * and for the log BANNED_DISGUISED_NAME, BANNED_ENCRYPTED,
 * BANNED_LIMIT_EXCEEDED, BANNED_UNDECIPHERABLE. Reads: banned.*. A bank that signs
 * (dkim-sign) may not pass banned mail (destiny pass or lovers): refused at load.
 */
import { PostsealError } from '../../errors';
import { messageContent } from '../../lib/mime/parts';
import { coversAllRecipients, destinyDecision } from '../../pipeline/destiny';
import { defineStage, type Finding, type Rule } from '../../pipeline/stage';
import { replies, withText } from '../../smtp/replies';
import { inspect } from './inspect';
import { compileRule, compileRules } from './rules';
import { bannedBankSchema, type BannedSettings } from './schema';

const FINDINGS = [
  'BANNED_FILE',
  'BANNED_FILE_LOVED',
  'BANNED_FILE_MORE',
  'BANNED_UNCHECKED',
  'BANNED_BUSY',
  'BANNED_BYPASSED',
  'BANNED_DISGUISED_NAME',
  'BANNED_ENCRYPTED',
  'BANNED_LIMIT_EXCEEDED',
  'BANNED_UNDECIPHERABLE',
] as const;

export const ALERT_FIELD = 'X-Postseal-Alert';

/** The kind and path from a BANNED_FILE detail, re-checked against their alphabets: only these reach a reply or a field. */
function kindAndPath(f: Finding): { kind: string; path: string } {
  const m = /^\[([a-z0-9 .+\-/]{1,60})\] part ([0-9/]{1,1000}) /.exec(f.detail ?? '');
  return m ? { kind: m[1], path: m[2] } : { kind: 'file', path: '?' };
}

function alert(f: Finding) {
  const { kind, path } = kindAndPath(f);
  return [{ name: ALERT_FIELD, value: `BANNED, message contains ${kind} (part ${path})` }];
}

/** X-Postseal-Alert for a part too big to look into (amavisd's CC_UNCHECKED): fixed words and the path. */
function uncheckedAlert(f: Finding) {
  const path = /^part ([0-9/]{1,1000}) /.exec(f.detail ?? '')?.[1] ?? '?';
  return [{ name: ALERT_FIELD, value: `UNCHECKED, too large to check (part ${path})` }];
}

const bannedFile: Rule<BannedSettings> = (s, _b, f) =>
  destinyDecision(s.destiny, withText(replies.bannedRejected, `${replies.bannedRejected.text} (${kindAndPath(f).kind})`), alert(f), 'banned');

export const bannedStage = defineStage<BannedSettings, (typeof FINDINGS)[number]>({
  id: 'banned',
  phase: 'check',
  after: ['header-sanity'],
  settings: { key: 'banned', schema: bannedBankSchema },
  findings: FINDINGS,
  rules: {
    BANNED_FILE: bannedFile,
    BANNED_FILE_LOVED: (_s, _b, f) => ({ action: 'tag', fields: alert(f) }),
    BANNED_UNCHECKED: (_s, _b, f) => ({ action: 'tag', fields: uncheckedAlert(f) }),
    BANNED_BUSY: () => ({ action: 'tempfail', reply: replies.bannedBusy }),
  },
  check(s, bank, where) {
    s.rules.forEach((r, i) => {
      const c = compileRule(r, i + 1);
      if ('problem' in c) throw new PostsealError('CFG_SCHEMA_INVALID', `${where}: /banned/rules/${i}${c.key ? `/${c.key}` : ''}: rule ${i + 1}: ${c.problem}`);
    });
    // Outgoing mail is signed in such a bank: a compromised account must not send signed malware.
    if (bank.stages.includes('dkim-sign') && (s.destiny === 'pass' || s.lovers.length > 0)) {
      const what = s.destiny === 'pass' ? '/banned/destiny: pass' : '/banned/lovers: not empty';
      throw new PostsealError(
        'CFG_INCONSISTENT',
        `${where}: ${what} in a bank that signs (dkim-sign): banned mail would leave signed; set destiny to reject (the default), bounce, quarantine or discard, and lovers to []`,
      );
    }
  },
  create(s, _bank, deps) {
    const rules = compileRules(s.rules);
    return {
      id: 'banned',
      async run(tx, signal) {
        if (coversAllRecipients(s.bypass, tx)) return { findings: [{ code: 'BANNED_BYPASSED', detail: 'every recipient is in banned.bypass' }] };
        const content = await messageContent(tx.message, s.limits, signal, deps.unpackMemory, deps.unpacker);
        const loved = coversAllRecipients(s.lovers, tx);
        // The first banned part decides (and names the kind in the reply and the one alert
        // field, as amavisd's X-Amavis-Alert does); the others are listed for the log.
        let first = true;
        const findings: Finding[] = inspect(content.root, rules, s, { tests: 0 }).map((f) => {
          if (f.code !== 'BANNED_FILE') return { code: f.code, detail: f.detail };
          const code = first ? (loved ? 'BANNED_FILE_LOVED' : 'BANNED_FILE') : 'BANNED_FILE_MORE';
          first = false;
          return { code, detail: f.kind ? `[${f.kind}] ${f.detail}` : f.detail };
        });
        return { findings };
      },
    };
  },
});
