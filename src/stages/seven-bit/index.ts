/**
 * seven-bit: makes originating mail 7-bit before it is signed, so that no later hop that
 * lacks 8BITMIME downgrades it and breaks the signature (amavisd left this to Postfix by
 * hiding 8BITMIME; discardEhloKeywords: [8BITMIME] still does that).
 *
 * Only the parts that need it change (plan.ts): their Content-Transfer-Encoding field and
 * their body; every other byte, boundaries and fields included, is copied as received. The
 * body is read twice from the spool (walk, then rewrite) and never held in memory. A message
 * that is sure to need nothing (clean.ts: 7-bit, short lines, no 8bit label) is not walked.
 *
 * Findings: SEVEN_BIT_CONVERTED (what was re-encoded); SEVEN_BIT_EIGHT_BIT_HEADER (8-bit
 * header fields, i.e. SMTPUTF8 mail: it cannot be made 7-bit and is left as it is);
 * SEVEN_BIT_SIGNED_EIGHT_BIT (multipart/signed with 8-bit content, left as it is;
 * sevenBit.signedEightBit: pass, or tempfail 451 4.6.3); SEVEN_BIT_UNCONVERTIBLE (parts that
 * cannot be fixed here, among them parts nested deeper than sevenBit.maxMimeDepth, which are
 * passed on unchanged).
 */
import { isAscii } from 'node:buffer';
import { MimeWalker } from '../../lib/mime/structure';
import { applyEdits } from '../../lib/mime/splice';
import { defineStage, type Finding } from '../../pipeline/stage';
import { replies } from '../../smtp/replies';
import { Message, makeField, type HeaderField } from '../../transaction/message';
import { spoolFromChunks } from '../../transaction/spool';
import { needsNoChange } from './clean';
import { planSevenBit, type TransferEncoding } from './plan';
import { sevenBitBankSchema, type SevenBitSettings } from './schema';

const FINDINGS = ['SEVEN_BIT_CONVERTED', 'SEVEN_BIT_EIGHT_BIT_HEADER', 'SEVEN_BIT_SIGNED_EIGHT_BIT', 'SEVEN_BIT_UNCONVERTIBLE'] as const;

export const sevenBitStage = defineStage<SevenBitSettings, (typeof FINDINGS)[number]>({
  id: 'seven-bit',
  // An edit: the checks (verification above all) see the bytes as they arrived.
  phase: 'edit',
  settings: { key: 'sevenBit', schema: sevenBitBankSchema },
  findings: FINDINGS,
  rules: {
    SEVEN_BIT_SIGNED_EIGHT_BIT: (s) => (s.signedEightBit === 'tempfail' ? { action: 'tempfail', reply: replies.conversionFailed } : null),
  },
  create: (settings, _bank, deps) => ({
    id: 'seven-bit',
    async run(tx, signal) {
      const msg = tx.message;
      const eightBitFields = msg.fields.filter((f) => !isAscii(f.raw)).map((f) => f.name);
      if (eightBitFields.length) return { findings: [eightBitHeader(eightBitFields.join(','))] };
      const values = (name: string) => msg.get(name).map((f) => Message.value(f));
      if (await needsNoChange(values('content-transfer-encoding'), msg.openBody(), signal)) return { findings: [] };
      const walker = new MimeWalker(values('content-type')[0], values('content-transfer-encoding')[0], { maxDepth: settings.maxMimeDepth });
      for await (const chunk of msg.openBody()) {
        signal.throwIfAborted();
        walker.push(chunk as Buffer);
      }
      walker.end(msg.bodySize);
      const plan = planSevenBit(walker.root);
      if (plan.eightBitHeader) return { findings: [eightBitHeader('in a MIME part header')] };
      const findings: Finding[] = [];
      if (plan.signed.length) findings.push({ code: 'SEVEN_BIT_SIGNED_EIGHT_BIT', detail: plan.signed.join(', ') });
      if (plan.unconvertible.length) findings.push({ code: 'SEVEN_BIT_UNCONVERTIBLE', detail: plan.unconvertible.join(', ') });
      if (plan.edits.length === 0 && !plan.topEncoding) return { findings };

      const fields = plan.topEncoding ? withTopEncoding(msg.fields, plan.topEncoding) : msg.fields;
      const counts = Object.entries(plan.counts).filter(([, n]) => n > 0);
      findings.push({ code: 'SEVEN_BIT_CONVERTED', detail: counts.map(([enc, n]) => `${enc}: ${n}`).join(', ') });
      if (plan.edits.length === 0) return { findings, message: msg.withFields(fields) };
      const header = Buffer.concat([...fields.map((f) => f.raw), msg.separator]);
      const body = applyEdits(msg.openBody(), plan.edits);
      const spool = await spoolFromChunks(
        (async function* () {
          yield header;
          // A stage that timed out must not go on writing a spool file nobody removes.
          for await (const chunk of body) {
            signal.throwIfAborted();
            yield chunk;
          }
        })(),
        // The whole new header in the head, however close the old one came to the limit.
        { ...deps.spool, headBytes: header.length + 1, maxSizeBytes: Infinity, signal },
      );
      return { findings, message: Message.parse(spool) };
    },
  }),
});

function eightBitHeader(where: string): Finding {
  return { code: 'SEVEN_BIT_EIGHT_BIT_HEADER', detail: `${where}; left as it is` };
}

/** Rewrites or adds the top-level Content-Transfer-Encoding (with MIME-Version, RFC 2045 4, if missing). */
function withTopEncoding(fields: readonly HeaderField[], encoding: TransferEncoding): HeaderField[] {
  const field = makeField('Content-Transfer-Encoding', encoding);
  const at = fields.findIndex((f) => f.key === 'content-transfer-encoding');
  if (at >= 0) return fields.map((f, i) => (i === at ? field : f));
  const mimeVersion = fields.some((f) => f.key === 'mime-version') ? [] : [makeField('MIME-Version', '1.0')];
  return [...fields, ...mimeVersion, field];
}
