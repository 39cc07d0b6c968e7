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
 * \Q), is an error naming the file and line. A line of none of these forms is an error too (postgrey warns and
 * skips it), so a typo in a list is seen at start or reload, not as mail greylisted later.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';

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
const SAME_ESCAPES = new Set('bBdDfnrsStvwWcx');

/**
 * Perl's \A and \z/\Z become ^ and $; any other letter escape JavaScript does not know would
 * silently match the bare letter (\h, \K, \Q, ...), so it is an error instead.
 */
function perlToJs(body: string): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    const next = body[i + 1];
    if (c !== '\\' || next === undefined) {
      out += c;
      continue;
    }
    i++;
    if (next === 'A') out += '^';
    else if (next === 'z' || next === 'Z') out += '$';
    else if (/[A-Za-z]/.test(next) && !SAME_ESCAPES.has(next)) throw new Error(`\\${next} means something else in JavaScript`);
    else out += c + next;
  }
  return out;
}

function regexp(source: WhitelistSource, line: number, body: string): RegExp {
  try {
    return new RegExp(perlToJs(body), 'i');
  } catch (err) {
    throw new WhitelistSyntaxError(`${source.name} line ${line}: /${body}/ is not a regular expression JavaScript can read: ${(err as Error).message}`);
  }
}

function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

export function parseClientWhitelist(sources: readonly WhitelistSource[]): ClientWhitelist {
  const names: RegExp[] = [];
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
          names.push(new RegExp(`${literal(entry)}$`, 'i'));
        } else if (/^\S+$/.test(entry) && !v4) names.push(new RegExp(`(?:^|\\.)${literal(entry)}$`, 'i'));
        else throw new Error('not an address, network, host name or /regexp/');
      } catch (err) {
        throw new WhitelistSyntaxError(`${source.name} line ${line}: "${entry}": ${(err as Error).message}`);
      }
    }
  }
  return {
    size,
    matches(clientName, clientAddress) {
      if (clientName && names.some((r) => r.test(clientName))) return true;
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(clientAddress);
      const ip = mapped ? mapped[1] : clientAddress;
      if (isIPv4(ip)) return ips.check(ip, 'ipv4');
      if (isIPv6(ip)) return ips.check(ip, 'ipv6');
      return false;
    },
  };
}

export function parseRecipientWhitelist(sources: readonly WhitelistSource[]): RecipientWhitelist {
  const rules: RegExp[] = [];
  for (const source of sources) {
    for (const [line, entry] of entries(source)) {
      const re = /^\/(\S+)\/$/.exec(entry);
      if (re) rules.push(regexp(source, line, re[1]));
      else if (!/^\S+$/.test(entry)) throw new WhitelistSyntaxError(`${source.name} line ${line}: "${entry}" does not look like an address`);
      else {
        const at = entry.indexOf('@');
        const user = at < 0 ? entry : entry.slice(0, at);
        const domain = at < 0 ? undefined : entry.slice(at + 1);
        if (domain) rules.push(new RegExp(`^${literal(user)}(?:\\+[^@]+)?@${literal(domain)}$`, 'i'));
        else if (domain === '') rules.push(new RegExp(`^${literal(user)}(?:\\+[^@]+)?@`, 'i'));
        else rules.push(new RegExp(`(?:@|\\.)${literal(user)}$`, 'i'));
      }
    }
  }
  return { size: rules.length, matches: (recipient) => rules.some((r) => r.test(recipient)) };
}
