/**
 * postgrey's whitelist files, read as postgrey 1.37 reads them (read_clients_whitelists,
 * read_recipients_whitelists), so a site keeps /etc/postgrey/whitelist_clients and
 * whitelist_recipients (and their .local companions) unchanged. After "#" comments and blanks:
 *
 * clients:     /regexp/            matched against the client's name, case-insensitive
 *              1.2.3.4[/nn]        an IPv4 address or network
 *              1.2.3   1.2         a partial IPv4 address: its /24, its /16 (postgrey uses /24 for
 *                                  both, a bug in its code; here the /16 its comment means)
 *              2001:db8::/32       an IPv6 address or network (anything with two colons)
 *              example.com         a host name: the name or any name below it
 *              .example.com        the names below it (postgrey: none, see below)
 * recipients:  /regexp/            matched against the whole recipient
 *              user@domain         that address, also user+extension@domain
 *              user@               that local-part in any domain (postmaster@, abuse@)
 *              domain              the domain or any domain below it
 *
 * Regexps are postgrey's Perl ones read as JavaScript RegExp: the common subset (classes,
 * anchors, \d, \., alternation) means the same, Perl's \A, \z, \Z become ^ and $; one that
 * JavaScript cannot compile, or with a letter escape it would read as the bare letter (\h,
 * \Q), a POSIX class or \x{..}, is an error naming the file and line. A pattern with a
 * quantified group holding a quantifier or "|" is matched with a 50 ms limit (no match past
 * it): V8 backtracks exponentially on "(\w+\.?)+" where Perl does not, and a crafted client
 * name or recipient would hold the whole process. A line of none of these forms is an error too (postgrey warns and
 * skips it), so a typo in a list is seen at start or reload, not as mail greylisted later.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import vm from 'node:vm';

export interface ClientWhitelist {
  /** True when the client's name or address is listed. */
  matches(clientName: string, clientAddress: string): boolean;
  readonly size: number;
}

export interface RecipientWhitelist {
  matches(recipient: string): boolean;
  readonly size: number;
}

export interface WhitelistSource {
  /** For errors: the file's path. */
  readonly name: string;
  readonly text: string;
}

export class WhitelistSyntaxError extends Error {}

function* entries(source: WhitelistSource): Generator<[line: number, entry: string]> {
  // CRLF too (a file saved on Windows): JavaScript's "." stops at a CR where Perl's does not,
  // so "#.*$" would leave a comment in place and fail the line.
  const lines = source.text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const entry = lines[i].replace(/#.*$/, '').trim();
    if (entry) yield [i + 1, entry];
  }
}

/** Letters JavaScript reads after "\\" (outside the u flag) with the meaning Perl gives them. */
const SAME_ESCAPES = new Set('bBdDfnrsStvwWc');

/**
 * Perl's \A and \z/\Z become ^ and $; any other letter escape JavaScript does not know would
 * silently match the bare letter (\h, \K, \Q, ...), so it is an error instead, and so are
 * Perl's POSIX classes ([[:digit:]] is "[", ":", "d"... to JavaScript) and \x{...} (JavaScript:
 * "x" repeated). Also says whether the pattern has a quantified group holding a quantifier or
 * an alternation ("(\w+\.?)+", "(a|aa)*"): V8 backtracks exponentially on those where Perl's
 * regexp engine, with its cache, answers at once.
 */
function perlToJs(body: string): { source: string; nested: boolean } {
  let out = '';
  let inClass = false;
  // Per open group: whether it holds a quantifier or "|" so far.
  const groups: boolean[] = [];
  let nested = false;
  let afterBusyGroup = false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    const next = body[i + 1];
    const quantifiable = afterBusyGroup;
    afterBusyGroup = false;
    if (c === '\\' && next !== undefined) {
      i++;
      if ((next === 'A' || next === 'z' || next === 'Z') && !inClass) out += next === 'A' ? '^' : '$';
      else if (next === 'x' && !/^[0-9a-f]{2}/i.test(body.slice(i + 1))) throw new Error('\\x without two hex digits means "x" in JavaScript');
      else if (/[A-Za-z]/.test(next) && next !== 'x' && !SAME_ESCAPES.has(next)) throw new Error(`\\${next} means something else in JavaScript`);
      else out += c + next;
      continue;
    }
    if (inClass) {
      if (c === '[' && next === ':') throw new Error(`${/^\[:\^?\w+:\]/.exec(body.slice(i))?.[0] ?? '[:'} is a POSIX class to Perl, characters to JavaScript: write \\d, [a-z]`);
      if (c === ']') inClass = false;
      out += c;
      continue;
    }
    out += c;
    if (c === '[') {
      inClass = true;
      if (next === '^') out += body[++i];
      // A "]" first in a class is a literal one to Perl; to JavaScript "[]" is an empty class.
      if (body[i + 1] === ']') {
        out += '\\]';
        i++;
      }
    } else if (c === '(') groups.push(false);
    else if (c === ')') {
      const busy = groups.pop() ?? false;
      if (busy && groups.length) groups[groups.length - 1] = true;
      afterBusyGroup = busy;
    } else if (c === '|' || ((c === '*' || c === '+' || c === '{') && out.at(-2) !== '(')) {
      if (quantifiable && c !== '|') nested = true;
      if (groups.length) groups[groups.length - 1] = true;
    }
  }
  return { source: out, nested };
}

/** Longest a match of a pattern from perlToJs's "nested" kind may take; past it, no match. */
const MATCH_LIMIT_MS = 50;
const timedTest = new vm.Script('r.test(s)');

/** A whitelist regexp; one that could backtrack exponentially is run under a time limit. */
function regexp(source: WhitelistSource, line: number, body: string): (text: string) => boolean {
  let re: RegExp;
  let nested: boolean;
  try {
    const js = perlToJs(body);
    re = new RegExp(js.source, 'i');
    nested = js.nested;
  } catch (err) {
    throw new WhitelistSyntaxError(`${source.name} line ${line}: /${body}/ is not a regular expression JavaScript can read: ${(err as Error).message}`);
  }
  if (!nested) return tester(re);
  // vm's timeout interrupts a running RegExp (measured: 51 ms for one that would run for
  // minutes); it costs about 150 µs a call, so only these patterns pay it.
  const ctx = vm.createContext({ r: re, s: '' });
  return (text) => {
    ctx.s = text;
    try {
      return timedTest.runInContext(ctx, { timeout: MATCH_LIMIT_MS }) === true;
    } catch {
      return false;
    }
  };
}

const tester = (re: RegExp) => (text: string) => re.test(text);

function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

export function parseClientWhitelist(sources: readonly WhitelistSource[]): ClientWhitelist {
  const names: ((name: string) => boolean)[] = [];
  const ips = new BlockList();
  let size = 0;
  for (const source of sources) {
    for (const [line, entry] of entries(source)) {
      size++;
      const re = /^\/(\S+)\/$/.exec(entry);
      if (re) {
        names.push(regexp(source, line, re[1]));
        continue;
      }
      const v4 = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?:\/(\d{1,2}))?$/.exec(entry);
      const partial = /^\d{1,3}\.\d{1,3}(\.\d{1,3})?$/.exec(entry);
      try {
        if (v4 && isIPv4(v4[1])) ips.addSubnet(v4[1], v4[2] === undefined ? 32 : Number(v4[2]), 'ipv4');
        else if (partial) ips.addSubnet(partial[1] ? `${entry}.0` : `${entry}.0.0`, partial[1] ? 24 : 16, 'ipv4');
        else if (/^.*:.*:.*$/.test(entry)) {
          const [addr, bits] = entry.split('/');
          if (!isIPv6(addr)) throw new Error('not an IPv6 address');
          ips.addSubnet(addr, bits === undefined ? 128 : Number(bits), 'ipv6');
        } else if (/^\.\S+$/.test(entry)) {
          // ".example.com" (Postfix access-map style): the names below it. postgrey builds
          // "(^|\.)\.example\.com$" from it, which matches no host name.
          names.push(tester(new RegExp(`${literal(entry)}$`, 'i')));
        } else if (/^\S+$/.test(entry) && !v4) names.push(tester(new RegExp(`(?:^|\\.)${literal(entry)}$`, 'i')));
        else throw new Error('not an address, network, host name or /regexp/');
      } catch (err) {
        throw new WhitelistSyntaxError(`${source.name} line ${line}: "${entry}": ${(err as Error).message}`);
      }
    }
  }
  return {
    size,
    matches(clientName, clientAddress) {
      if (clientName && names.some((test) => test(clientName))) return true;
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(clientAddress);
      const ip = mapped ? mapped[1] : clientAddress;
      if (isIPv4(ip)) return ips.check(ip, 'ipv4');
      if (isIPv6(ip)) return ips.check(ip, 'ipv6');
      return false;
    },
  };
}

export function parseRecipientWhitelist(sources: readonly WhitelistSource[]): RecipientWhitelist {
  const rules: ((recipient: string) => boolean)[] = [];
  for (const source of sources) {
    for (const [line, entry] of entries(source)) {
      const re = /^\/(\S+)\/$/.exec(entry);
      if (re) rules.push(regexp(source, line, re[1]));
      else if (!/^\S+$/.test(entry)) throw new WhitelistSyntaxError(`${source.name} line ${line}: "${entry}" does not look like an address`);
      else {
        const at = entry.indexOf('@');
        const user = at < 0 ? entry : entry.slice(0, at);
        const domain = at < 0 ? undefined : entry.slice(at + 1);
        if (domain) rules.push(tester(new RegExp(`^${literal(user)}(?:\\+[^@]+)?@${literal(domain)}$`, 'i')));
        else if (domain === '') rules.push(tester(new RegExp(`^${literal(user)}(?:\\+[^@]+)?@`, 'i')));
        else rules.push(tester(new RegExp(`(?:@|\\.)${literal(user)}$`, 'i')));
      }
    }
  }
  return { size: rules.length, matches: (recipient) => rules.some((test) => test(recipient)) };
}
