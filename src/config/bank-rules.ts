/**
 * Banks chosen per transaction (amavisd @client_ipaddr_policy / MYNETS and sender-based policy
 * maps), from the main config's `bankRules`. The listener port gives a bank; the first
 * clientNetworks rule whose networks hold the client address replaces it; the first senders
 * rule matching the envelope sender replaces that, on the listeners the rule names only (the
 * envelope sender is the client's to write: a rule on the inbound listener would let anyone
 * pick the bank). On a milter listener the first macros rule (a milter macro such as
 * {daemon_name} or {auth_authen} with one of its values) comes before both and stands for
 * the port: the later rules' listenerBanks compare with the bank it chose. (A valid DKIM signer may switch once more
 * after DATA: dkimVerify.signerBanks, pipeline/runner.ts.) The result names the rule and the
 * network or pattern that matched, for the per-message log line and `postseal explain`.
 *
 * Failures: a network that does not parse is CFG_SCHEMA_INVALID naming the pointer; a bank
 * without a file is found by config/load.ts (CFG_BANK_MISSING).
 */
import type { BankRulesConfig } from './main-schema';
import { parseNetworks, type NetworkList } from './networks';

/** One step of the chain: which bank, and why. */
export interface BankStep {
  readonly bank: string;
  /** `listener port 10024`, `clientNetworks[0] 192.0.2.0/24`, `senders[1] *.example.org`. */
  readonly rule: string;
}

export interface BankChoice {
  /** The bank the transaction runs on (the last step). */
  readonly bank: string;
  /** The rule that chose it (the last step's). */
  readonly rule: string;
  /** Every step that applied, from the port on. */
  readonly steps: readonly BankStep[];
}

export interface BankChooser {
  /**
   * `client` is an address (or undefined when unknown); `sender` the MAIL FROM address ('' for
   * <>); `macros` the milter macros by name ({daemon_name}), given by milter listeners only.
   */
  choose(listener: { port: number; bank: string }, client: string | undefined, sender: string, macros?: ReadonlyMap<string, string>): BankChoice;
  /** Every macro a rule names, for the milter to ask the MTA for. */
  readonly macros: readonly string[];
  /** Every bank a rule names (config/load.ts loads and checks them). */
  readonly banks: readonly string[];
}

interface NetworkRule {
  readonly index: number;
  readonly bank: string;
  readonly only: ReadonlySet<string>;
  readonly networks: readonly { text: string; list: NetworkList }[];
}

interface MacroRule {
  readonly index: number;
  readonly bank: string;
  readonly only: ReadonlySet<string>;
  readonly macro: string;
  readonly values: ReadonlySet<string>;
}

interface SenderRule {
  readonly index: number;
  readonly bank: string;
  readonly only: ReadonlySet<string>;
  readonly patterns: readonly string[];
}

/** Throws Error with the JSON pointer of a bad network; the loader wraps it. */
/** `macros` may be left out by callers that predate macro rules (tests, tools): no macro rules. */
export function compileBankRules(config: Omit<BankRulesConfig, 'macros'> & { readonly macros?: BankRulesConfig['macros'] }): BankChooser {
  const networkRules: NetworkRule[] = (config.clientNetworks ?? []).map((r, index) => ({
    index,
    bank: r.bank,
    only: new Set(r.listenerBanks ?? []),
    networks: r.networks.map((text, i) => {
      try {
        return { text, list: parseNetworks([text]) };
      } catch (err) {
        throw new Error(`/bankRules/clientNetworks/${index}/networks/${i}: ${(err as Error).message}`);
      }
    }),
  }));
  const senderRules: SenderRule[] = (config.senders ?? []).map((r, index) => ({
    index,
    bank: r.bank,
    only: new Set(r.listenerBanks ?? []),
    patterns: r.senders.map((p) => p.toLowerCase()),
  }));
  const macroRules: MacroRule[] = (config.macros ?? []).map((r, index) => ({
    index,
    bank: r.bank,
    only: new Set(r.listenerBanks ?? []),
    macro: r.macro,
    values: new Set(r.values ?? []),
  }));
  const banks = [...new Set([...macroRules.map((r) => r.bank), ...networkRules.map((r) => r.bank), ...senderRules.map((r) => r.bank)])];
  return {
    banks,
    macros: [...new Set(macroRules.map((r) => r.macro))],
    choose(listener, client, sender, macros) {
      const steps: BankStep[] = [{ bank: listener.bank, rule: `listener port ${listener.port}` }];
      let base = listener.bank;
      if (macros) {
        for (const r of macroRules) {
          if (r.only.size > 0 && !r.only.has(listener.bank)) continue;
          const value = macros.get(r.macro);
          if (value === undefined || value === '' || (r.values.size > 0 && !r.values.has(value))) continue;
          steps.push({ bank: r.bank, rule: `macros[${r.index}] ${r.macro}=${value}` });
          base = r.bank;
          break;
        }
      }
      const applies = (only: ReadonlySet<string>) => only.size === 0 || only.has(base);
      if (client !== undefined) {
        for (const r of networkRules) {
          if (!applies(r.only)) continue;
          const hit = r.networks.find((n) => n.list.contains(client));
          if (hit) {
            steps.push({ bank: r.bank, rule: `clientNetworks[${r.index}] ${hit.text}` });
            break;
          }
        }
      }
      for (const r of senderRules) {
        // Anyone can write any MAIL FROM: a sender rule applies only on the listeners it names.
        if (!r.only.has(base)) continue;
        const hit = r.patterns.find((p) => senderMatches(p, sender));
        if (hit) {
          steps.push({ bank: r.bank, rule: `senders[${r.index}] ${hit}` });
          break;
        }
      }
      const last = steps[steps.length - 1];
      return { bank: last.bank, rule: last.rule, steps };
    },
  };
}

/** `pattern` is lower-case: an address, a domain, `*.domain`, or `<>`. */
export function senderMatches(pattern: string, sender: string): boolean {
  const s = sender.toLowerCase();
  if (pattern === '<>') return s === '';
  if (s === '') return false;
  if (pattern.includes('@')) return s === pattern;
  const at = s.lastIndexOf('@');
  // A sender without a domain (Postfix may pass a bare local part) matches no domain rule.
  if (at < 0) return false;
  const domain = s.slice(at + 1).replace(/\.$/, '');
  if (pattern.startsWith('*.')) return domain.endsWith(pattern.slice(1)) && domain.length > pattern.length - 1;
  return domain === pattern;
}
