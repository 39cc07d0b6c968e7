/**
 * From a message's content tree (lib/mime/parts.ts) to the banned stage's findings: every
 * leaf through the rules (rules.ts), every node for disguised names, encrypted members, caps
 * and damage, each weighed by the bank's settings. A banned part gives BANNED_FILE (or
 * BANNED_FILE_LOVED, index.ts decides) whose detail names the part path, the kind and the
 * rule for the log; the kind alone (names.ts, a fixed alphabet) may reach a reply.
 *
 * At most MAX_PER_CODE findings of one code are reported, then one that counts the rest: a
 * message of 10,000 banned parts makes one log line of bounded length.
 */
import type { ContentNode } from '../../lib/archive/expand';
import { EXTERNAL_FORMATS } from '../../lib/archive/external';
import { archiveKind } from '../../lib/archive/magic';
import { forLog, isDisguised } from './names';
import { decideLeaves, kindOf, type CompiledRule, type RuleWork } from './rules';
import type { BannedSettings } from './schema';

export const MAX_PER_CODE = 20;

export type InspectCode = 'BANNED_FILE' | 'BANNED_UNCHECKED' | 'BANNED_BUSY' | 'BANNED_DISGUISED_NAME' | 'BANNED_ENCRYPTED' | 'BANNED_LIMIT_EXCEEDED' | 'BANNED_UNDECIPHERABLE';

/**
 * Caps that say "too big to look into" (size, total bytes, member count, archives read by unar): ordinary mail hits
 * them (a 40 MiB source tarball), so they are `onTooLarge`'s. The others (a bomb's ratio,
 * nesting depth, an unar run over decoders.timeoutMs) are how evasion looks, and `onLimit`'s,
 * as damage is.
 */
const TOO_LARGE = new Set(['size', 'total', 'members', 'archives']);

export interface InspectFinding {
  readonly code: InspectCode;
  readonly detail: string;
  /** For BANNED_FILE: the part path and the short kind a reply may show. */
  readonly path?: string;
  readonly kind?: string;
}

class FindingList {
  readonly list: InspectFinding[] = [];
  private readonly counts = new Map<InspectCode, number>();

  add(f: InspectFinding): void {
    const n = (this.counts.get(f.code) ?? 0) + 1;
    this.counts.set(f.code, n);
    if (n <= MAX_PER_CODE) this.list.push(f);
  }

  done(): InspectFinding[] {
    for (const [code, n] of this.counts) if (n > MAX_PER_CODE) this.list.push({ code, detail: `${n - MAX_PER_CODE} more not listed` });
    return this.list;
  }
}

function describe(node: ContentNode): string {
  const parts = [`part ${node.path}`];
  if (node.names.length) parts.push(`name "${forLog(node.names[0])}"`);
  if (node.declaredTypes.length) parts.push(`declared ${forLog(node.declaredTypes.join(','))}`);
  if (node.types.length) parts.push(`type .${node.types.join(',.')}`);
  return parts.join(' ');
}

function ruleText(rule: CompiledRule): string {
  return `rule ${rule.number} ${rule.allow ? 'allow' : 'deny'} /${rule.pattern}/ on ${rule.on}${rule.comment ? ` (${rule.comment})` : ''}`;
}

export function inspect(root: ContentNode, rules: readonly CompiledRule[], s: BannedSettings, work: RuleWork): InspectFinding[] {
  const out = new FindingList();
  let unchecked = false;
  const ban = (node: ContentNode, kind: string, why: string) => out.add({ code: 'BANNED_FILE', path: node.path, kind, detail: `${describe(node)}: ${why}` });
  for (const { node, match } of decideLeaves(rules, root, work)) {
    if (match && !match.rule.allow) ban(node, kindOf(match), `${kindOf(match)} matched ${match.kind} "${forLog(match.key)}", ${ruleText(match.rule)}`);
  }
  // The conditions that are no rule's business; every node, containers included, in document order.
  const stack = [root];
  while (stack.length) {
    const node = stack.pop()!;
    for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]);
    if (node.names.some(isDisguised) || node.disguise) {
      const why = node.disguise ?? 'bidirectional, invisible or control characters in the name';
      out.add({ code: 'BANNED_DISGUISED_NAME', detail: `${describe(node)}: ${why}` });
      if (s.disguisedNames === 'banned') ban(node, 'disguised file name', why);
    }
    if (node.encrypted) {
      out.add({ code: 'BANNED_ENCRYPTED', detail: describe(node) });
      if (s.encrypted === 'banned') ban(node, 'encrypted archive', 'encrypted archive member');
    }
    if (node.limit === 'busy') {
      // Not the message's fault: the process had no memory to spare; a retry will.
      out.add({ code: 'BANNED_BUSY', detail: `${describe(node)}: unpacking memory full, not checked` });
    } else if (node.limit) {
      out.add({ code: 'BANNED_LIMIT_EXCEEDED', detail: `${describe(node)}: ${node.limit} limit` });
      if (!TOO_LARGE.has(node.limit)) {
        if (s.onLimit === 'banned') ban(node, 'archive limit exceeded', `${node.limit} limit, not checked`);
      } else if (s.onTooLarge === 'banned') ban(node, 'too large to check', `${node.limit} limit, not checked`);
      else if (!unchecked) {
        // One alert field for the message (amavisd's CC_UNCHECKED): the first such part.
        unchecked = true;
        out.add({ code: 'BANNED_UNCHECKED', path: node.path, kind: 'too large to check', detail: `${describe(node)}: ${node.limit} limit, delivered unchecked` });
      }
    }
    if (node.problem) {
      out.add({ code: 'BANNED_UNDECIPHERABLE', detail: `${describe(node)}: ${forLog(node.problem)}` });
      // A MIME part that is no archive can only be unreadable by its header.
      const archive = archiveKind(node.types) !== null || node.types.some((t) => (EXTERNAL_FORMATS as readonly string[]).includes(t));
      const kind = node.declaredTypes.length > 0 && !archive ? 'unreadable part' : 'damaged archive';
      if (s.onLimit === 'banned') ban(node, kind, 'cannot be read, not checked');
    }
  }
  return out.done();
}
