/**
 * Every stage a bank may list, by id. The record type makes a missing factory a compile
 * error when a stage id is added to the bank schema.
 */
import type { StageId } from '../config/bank-schema';
import type { StageFactory } from '../pipeline/stage';
import { createArcSealStage } from './arc-seal';
import { createArcVerifyStage } from './arc-verify';
import { createAuthenticationResultsStage } from './authentication-results';
import { createDkimSignStage } from './dkim-sign';
import { createDkimVerifyStage } from './dkim-verify';
import { createDmarcStage } from './dmarc';
import { createHeaderSanityStage } from './header-sanity';
import { createLoopGuardStage } from './loop-guard';
import { createSevenBitStage } from './seven-bit';
import { createSpfStage } from './spf';

export const stageFactories: Record<StageId, StageFactory> = {
  'loop-guard': createLoopGuardStage,
  'header-sanity': createHeaderSanityStage,
  'dkim-verify': createDkimVerifyStage,
  spf: createSpfStage,
  dmarc: createDmarcStage,
  'arc-verify': createArcVerifyStage,
  'authentication-results': createAuthenticationResultsStage,
  'arc-seal': createArcSealStage,
  'seven-bit': createSevenBitStage,
  'dkim-sign': createDkimSignStage,
};
