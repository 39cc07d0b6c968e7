/**
 * Address lists in CIDR notation (xforwardTrustedNetworks and later mynetworks), matched
 * with node's BlockList so IPv4, IPv6 and IPv4-mapped IPv6 peers are handled alike.
 */
import { BlockList, isIPv4, isIPv6 } from 'node:net';

export interface NetworkList {
  contains(address: string): boolean;
}

export function parseNetworks(cidrs: readonly string[]): NetworkList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [addr, bits] = cidr.split('/');
    const family = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : null;
    if (!family) throw new Error(`"${cidr}" is not an IPv4 or IPv6 network`);
    const max = family === 'ipv4' ? 32 : 128;
    const prefix = bits === undefined ? max : Number(bits);
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new Error(`"${cidr}" has a prefix length outside 0..${max}`);
    list.addSubnet(addr, prefix, family);
  }
  return {
    contains(address: string): boolean {
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
      const plain = mapped ? mapped[1] : address;
      if (isIPv4(plain)) return list.check(plain, 'ipv4');
      if (isIPv6(plain)) return list.check(plain, 'ipv6');
      return false;
    },
  };
}
