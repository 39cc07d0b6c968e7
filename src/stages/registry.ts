/**
 * Every stage a bank may list, one line each: adding a stage is its folder and a line here
 * (docs/architecture.md, "Adding a stage"). From these definitions come the bank schema (each
 * stage's settings section, the `stages` enum), the findings list, the verdict rules and
 * docs/config.md; the order here is only the order of docs and listings, not of a run (the
 * runner orders by phase and `after`).
 */
import { composeBankSchema, type Bank } from '../config/bank-schema';
import { PostsealError } from '../errors';
import { settingsOf } from '../pipeline/runner';
import type { RegisteredStage } from '../pipeline/stage';
import { arcSealStage } from './arc-seal';
import { arcVerifyStage } from './arc-verify';
import { authenticationResultsStage } from './authentication-results';
import { bannedStage } from './banned';
import { dkimSignStage } from './dkim-sign';
import { dkimVerifyStage } from './dkim-verify';
import { dmarcStage } from './dmarc';
import { headerSanityStage } from './header-sanity';
import { loopGuardStage } from './loop-guard';
import { sevenBitStage } from './seven-bit';
import { spamStage, spamTagStage } from './spam';
import { spfStage } from './spf';
import { virusStage } from './virus';

export const stageRegistry: readonly RegisteredStage[] = [
  loopGuardStage,
  headerSanityStage,
  dkimVerifyStage,
  spfStage,
  dmarcStage,
  arcVerifyStage,
  bannedStage,
  virusStage,
  spamStage,
  spamTagStage,
  authenticationResultsStage,
  sevenBitStage,
  dkimSignStage,
  arcSealStage,
];

/** Each settings section once; two stages may share one (arc-verify reads dkimVerify) if it is the same schema. */
function sections(defs: readonly RegisteredStage[]): Map<string, object> {
  const out = new Map<string, object>();
  for (const d of defs) {
    if (!d.settings) continue;
    const seen = out.get(d.settings.key);
    if (seen && seen !== d.settings.schema) throw new Error(`stages define bank section "${d.settings.key}" twice, differently`);
    out.set(d.settings.key, d.settings.schema);
  }
  return out;
}

/** The bank schema: common keys and every registered stage's settings. */
export const bankSchema = composeBankSchema(
  sections(stageRegistry),
  stageRegistry.map((d) => d.id),
);

/** Every finding code a registered stage can report, stage by stage. */
export const findingCodes: readonly string[] = stageRegistry.flatMap((d) => d.findings);

/** The load-time checks of the stages a bank lists; `file` is the bank's file, for the message. */
export function checkBankStages(file: string, bank: Bank): void {
  for (const id of bank.stages) {
    const def = stageRegistry.find((d) => d.id === id);
    if (!def) throw new PostsealError('CFG_INCONSISTENT', `${file}: /stages: "${id}" is not a stage`);
    def.check?.(settingsOf(def, bank), bank, file);
  }
}
