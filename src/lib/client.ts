/**
 * The original client as Postfix describes it with XFORWARD (XFORWARD_README): its address
 * and HELO name, read the way the checks need them. "[UNAVAILABLE]" means Postfix had none.
 */
import net from 'node:net';
import type { ClientInfo } from '../transaction/transaction';

/** The client's IP address; Postfix writes IPv6 ones as "IPv6:2001:db8::1". */
export function clientAddress(client: ClientInfo): string | undefined {
  const addr = known(client.addr)?.replace(/^ipv6:/i, '');
  return addr && net.isIP(addr) ? addr : undefined;
}

/** An XFORWARD attribute that Postfix knew. */
export function known(v: string | undefined): string | undefined {
  return v && v !== '[UNAVAILABLE]' ? v : undefined;
}
