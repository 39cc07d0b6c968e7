/**
 * Every stage a bank may list, by id. The record type makes a missing factory a compile
 * error when a stage id is added to the bank schema.
 */
import type { StageId } from '../config/bank-schema';
import type { StageFactory } from '../pipeline/stage';
import { createHeaderSanityStage } from './header-sanity';
import { createLoopGuardStage } from './loop-guard';

export const stageFactories: Record<StageId, StageFactory> = {
  'loop-guard': createLoopGuardStage,
  'header-sanity': createHeaderSanityStage,
};
