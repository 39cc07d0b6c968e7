/**
 * Start-up checks of a bank's signing settings that its schema cannot express; a failure is
 * CFG_INCONSISTENT naming the bank file and the JSON pointer.
 */
import type { CommonBank } from '../../config/bank-schema';
import { PostsealError } from '../../errors';
import type { DkimSignSettings } from './schema';

export function checkSigningBank(conf: DkimSignSettings, bank: CommonBank, file: string): void {
  if (!bank.originating) {
    throw new PostsealError('CFG_INCONSISTENT', `${file}: /stages: dkim-sign signs only mail from our own users; set originating: true on this bank or remove the stage`);
  }
  const lists: [string, readonly string[] | undefined][] = [
    ['/dkimSign/signature', conf.signature.signedHeaderFields],
    ...conf.bySender.map((e, i): [string, readonly string[] | undefined] => [`/dkimSign/bySender/${i}`, e.signedHeaderFields]),
  ];
  for (const [at, list] of lists) {
    if (list && !list.some((f) => f.toLowerCase() === 'from')) {
      throw new PostsealError('CFG_INCONSISTENT', `${file}: ${at}/signedHeaderFields: must include from (RFC 6376 5.4: the From field is always signed)`);
    }
  }
}
