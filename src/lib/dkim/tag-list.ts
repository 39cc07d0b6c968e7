/**
 * Tag lists (RFC 6376 3.2) of DKIM-Signature, ARC-Seal and ARC-Message-Signature fields, read
 * by mailauth's parser in its strict mode: tag names as written (case-sensitive, so "D=" is
 * not d=), and every deviation from the grammar listed in `syntaxErrors` (an empty tag-spec
 * as in ";;", a tag name that does not start with a letter, a duplicate tag, a part without
 * "="). The callers reject a field with any syntax error; nothing here throws.
 */
import type { HeaderField } from '../../transaction/message';

const parseDkimHeaders: (
  line: string,
  opts?: { strict: boolean },
) => {
  parsed?: Record<string, { value?: unknown }>;
  tags?: { name: string; value: string }[];
  syntaxErrors?: string[];
} = require('mailauth/lib/parse-dkim-headers');

export interface TagList {
  /** Values as mailauth normalizes them (no white space in b= bh= h=; numbers for v t x l, and i of ARC fields). */
  readonly parsed: Record<string, { value?: unknown }>;
  /** Values as written, FWS at the edges removed. */
  readonly raw: Map<string, string>;
  readonly syntaxErrors: readonly string[];
}

export function tagsOf(field: HeaderField): TagList {
  // Field bytes are UTF-8 where they are not ASCII (RFC 6532), as mailauth reads them.
  const t = parseDkimHeaders(field.raw.toString(), { strict: true });
  return { parsed: t.parsed ?? {}, raw: new Map((t.tags ?? []).map((tag) => [tag.name, tag.value])), syntaxErrors: t.syntaxErrors ?? [] };
}
