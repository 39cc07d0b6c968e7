/**
 * arc-seal under load and under abort: sealing a message full of DKIM-Signatures verifies
 * none of them (no DNS query) and stays cheap; an aborted stage adds nothing and rejects.
 * The set it adds is validated by arc-verify.
 */
import path from 'node:path';
import { arcSealStage } from '../../src/stages/arc-seal';
import { arcVerifyStage } from '../../src/stages/arc-verify';
import type { Message } from '../../src/transaction/message';
import { corpusDir, corpusMessage, corpusZone } from '../helpers/auth';
import { loadTestBank } from '../helpers/banks';
import { startDnsServer, type DnsServer } from '../helpers/dns-server';
import { resultsAfter, stageFor, testStageDeps, testTransaction } from '../helpers/stage-run';
import { ARC_RESULT } from '../../src/lib/authentication-results';
import type { ResultKey } from '../../src/lib/results';

const keyFile = path.join(corpusDir, 'keys/other2048.pem');
const bank = () => loadTestBank({ stages: ['arc-verify', 'arc-seal'], arcSeal: { domain: 'example.org', selector: 'rsa', keyFile } });

let dns: DnsServer;
beforeAll(async () => {
  dns = await startDnsServer(structuredClone(corpusZone));
});
afterAll(() => dns.close());

function withDkimSignatures(message: Buffer, count: number): Buffer {
  const sigs = Array.from(
    { length: count },
    (_, i) =>
      `DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=flood${i};\r\n\th=from:to:subject; bh=OZUHvjT8siil7DzoDOkewNXEmbxm9um2l/WKVyvanFo=;\r\n\tb=${'A'.repeat(340)}==\r\n`,
  );
  return Buffer.concat([Buffer.from(sigs.join(''), 'latin1'), message]);
}

async function bytesOf(m: Message): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of m.openRaw()) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

test('sealing a message with 1,000 DKIM-Signatures asks DNS nothing, and the set validates', async () => {
  const auth = testStageDeps(dns);
  const tx = testTransaction(withDkimSignatures(corpusMessage('relaxed-relaxed.eml'), 1000));
  dns.queries.length = 0;
  const before = { get: <T>(key: ResultKey<T>) => (key === (ARC_RESULT as ResultKey<unknown>) ? ({ result: 'none', instance: 0 } as T) : undefined) };
  const outcome = await stageFor(arcSealStage, bank(), auth).run(tx, new AbortController().signal, before);
  expect(outcome.findings).toEqual([{ code: 'ARC_SEAL_SEALED', detail: 'i=1 cv=none' }]);
  expect(dns.queries).toEqual([]);

  const sealed = testTransaction(await bytesOf(outcome.message!));
  const verified = await stageFor(arcVerifyStage, bank(), auth).run(sealed, new AbortController().signal);
  expect(resultsAfter(verified).get(ARC_RESULT)).toMatchObject({ result: 'pass', instance: 1 });
  expect(dns.queries.map((q) => q.name)).toEqual(['rsa._domainkey.example.org']);
});

test('an aborted arc-seal rejects and adds no ARC set', async () => {
  const auth = testStageDeps(dns);
  const tx = testTransaction(corpusMessage('relaxed-relaxed.eml'));
  const ac = new AbortController();
  ac.abort(new Error('stage timed out'));
  await expect(stageFor(arcSealStage, bank(), auth).run(tx, ac.signal)).rejects.toThrow('stage timed out');
  expect(tx.message.get('arc-seal')).toEqual([]);
});

test('a keyFile that is not a private key is refused when the stage is made, naming the file', () => {
  const notAKey = path.join(corpusDir, 'relaxed-relaxed.eml');
  const b = loadTestBank({ stages: ['arc-verify', 'arc-seal'], arcSeal: { domain: 'example.org', selector: 'rsa', keyFile: notAKey } });
  expect(() => stageFor(arcSealStage, b, testStageDeps(dns))).toThrow(/\/arcSeal\/keyFile: .*relaxed-relaxed\.eml is not a private key/);
});
