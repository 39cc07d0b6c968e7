/**
 * Before timing anything, one message per path goes through a capturing smtp-sink and is
 * inspected, so the figures are known to include the work they claim: postseal's and
 * amavisd-new's DKIM signatures verify (mailauth, against the benchmark's own records), the
 * inbound path's Authentication-Results says dkim=pass, the 7-bit path sends no 8-bit body.
 */
import { readFileSync } from 'node:fs';
import { dkimVerify } from 'mailauth';
import { DUAL_DOMAIN, OWN_DOMAIN } from './messages';

export interface PathCheck {
  /** DKIM-Signature fields added on the way, and how many of them verify. */
  signaturesAdded: number;
  ownSignaturesValid: number;
  /** The Authentication-Results dkim= result for the inbound signature, if any was added. */
  authResultsDkim: string | null;
  /** Whether any 8-bit byte reached the downstream. */
  eightBitOut: boolean;
}

/** Splits an smtp-sink -D dump into the delivered messages (CRLF), in arrival order. */
export function readDump(file: string): Buffer[] {
  const text = readFileSync(file, 'latin1');
  return text
    .split(/^(?=X-Client-Addr: )/m)
    .filter((m) => m.startsWith('X-Client-Addr: '))
    .map((m) => {
      // smtp-sink writes its own fields, ending with a three-line Received, then the message.
      const lines = m.split('\n');
      const received = lines.findIndex((l) => l.startsWith('Received: from '));
      const body = lines
        .slice(received + 3)
        .join('\n')
        .replace(/\n\n$/, '\n');
      return Buffer.from(body.replace(/\n/g, '\r\n'), 'latin1');
    });
}

export async function checkMessage(delivered: Buffer, sent: Buffer, zone: ReadonlyMap<string, readonly string[]>): Promise<PathCheck> {
  const count = (b: Buffer) => (headerOf(b).match(/^DKIM-Signature:/gim) ?? []).length;
  const verified = await dkimVerify(delivered, {
    resolver: async (name: string, type: string) => {
      const values = type === 'TXT' ? zone.get(name.toLowerCase()) : undefined;
      if (!values) throw Object.assign(new Error(`no ${type} for ${name}`), { code: 'ENOTFOUND' });
      return values.map((v) => [v]);
    },
  });
  const own = verified.results.filter((r) => (r.signingDomain === OWN_DOMAIN || r.signingDomain === DUAL_DOMAIN) && r.status.result === 'pass');
  const ar = /^Authentication-Results:[^\r]*(?:\r\n[ \t][^\r]*)*/im.exec(headerOf(delivered));
  const dkim = ar ? /\bdkim=(\w+)/.exec(ar[0]) : null;
  return {
    signaturesAdded: count(delivered) - count(sent),
    ownSignaturesValid: own.length,
    authResultsDkim: dkim ? dkim[1] : null,
    eightBitOut: delivered.some((b) => b > 0x7f),
  };
}

function headerOf(message: Buffer): string {
  const end = message.indexOf('\r\n\r\n');
  return message.subarray(0, end < 0 ? message.length : end).toString('latin1');
}
