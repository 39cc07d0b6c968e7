/**
 * Every finding a stage can report, named STAGE_WHAT. The verdict module maps them to
 * actions; the log line lists them. Adding a stage adds its codes here.
 */
export const findingCodes = [
  'LOOP_GUARD_TOO_MANY_HOPS',
  'LOOP_GUARD_TRACE_SEEN',
  'HEADER_SANITY_NUL',
  'HEADER_SANITY_EIGHT_BIT_HEADER',
  'HEADER_SANITY_LONG_HEADER_LINE',
  'HEADER_SANITY_LONG_BODY_LINE',
  'HEADER_SANITY_MISSING_FROM',
  'HEADER_SANITY_MULTIPLE_FROM',
  'HEADER_SANITY_FIXED',
] as const;

export type FindingCode = (typeof findingCodes)[number];
