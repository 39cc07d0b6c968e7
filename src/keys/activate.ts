/**
 * Key rotation: activating a key makes it sign and sends the keys it replaces (the active
 * keys of the same signing domain and algorithm) to `retiring`. The change is written into
 * the key table file itself, through the yaml Document API so that its comments and layout
 * stay (written by keys/key-table-file.ts: exclusive temp file, owner and mode kept, under the
 * caller's lock), and applies to a running postseal on SIGHUP.
 *
 * An activation that would leave a signing table rule without an active key (the new key is
 * not in that rule) is refused: mail of that domain would go out unsigned.
 */
import { readFileSync } from 'node:fs';
import YAML from 'yaml';
import type { KeyState } from './schema';
import type { KeyStore, SigningKey } from './key-store';
import { replaceFile } from './key-table-file';

export interface StateChange {
  readonly key: SigningKey;
  readonly to: KeyState;
}

export interface ActivationPlan {
  readonly changes: readonly StateChange[];
  /** Why the activation must not be written; empty when it may. */
  readonly problems: readonly string[];
}

export function planActivation(store: KeyStore, key: SigningKey): ActivationPlan {
  const changes: StateChange[] = [{ key, to: 'active' }];
  for (const k of store.keys) {
    if (k !== key && k.state === 'active' && k.domain === key.domain && k.algorithm === key.algorithm) changes.push({ key: k, to: 'retiring' });
  }
  const stateAfter = (k: SigningKey) => changes.find((c) => c.key === k)?.to ?? k.state;
  const file = store.files?.signingTableFile;
  const problems: string[] = [];
  if (!store.rules.some((r) => r.keys.includes(key))) {
    problems.push(`${file}: no rule names "${key.name}", so it would sign nothing; add it to the keys of the rules for ${key.domain}`);
  }
  for (const r of store.rules) {
    if (r.signing.length > 0 && !r.keys.some((k) => stateAfter(k) === 'active')) {
      problems.push(`${file}: /${r.index}/keys: the rule for ${r.author} would have no active key left; add "${key.name}" to it`);
    }
  }
  return { changes, problems };
}

/** Writes the new states into the key table; returns the previous text, for `restoreKeyTable`. */
export function writeKeyStates(keyTableFile: string, changes: readonly StateChange[]): string {
  const before = readFileSync(keyTableFile, 'utf8');
  const doc = YAML.parseDocument(before);
  for (const c of changes) doc.setIn([c.key.name, 'state'], c.to);
  // lineWidth 0: a key written as one flow map stays on its line.
  replaceFile(keyTableFile, doc.toString({ lineWidth: 0 }));
  return before;
}

export function restoreKeyTable(keyTableFile: string, text: string): void {
  replaceFile(keyTableFile, text);
}
