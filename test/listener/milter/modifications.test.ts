/**
 * The modifications that turn the MTA's copy into the pipeline's message, derived by comparing
 * the two (listener/milter/modifications.ts), checked as the SMFIR packets they become.
 */
import { modificationsFor } from '../../../src/listener/milter/modifications';
import { Message } from '../../../src/transaction/message';
import { memorySpool } from '../../../src/transaction/spool';

const msg = (text: string) => Message.parse(memorySpool(Buffer.from(text, 'latin1')));
/** A packet as [code, then its index and NUL-separated strings]. */
function decode(p: Buffer): (string | number)[] {
  const code = String.fromCharCode(p[4]);
  const data = p.subarray(5);
  if (code === 'b') return [code, data.length];
  const strings = data.subarray(4).toString('latin1').split('\0').slice(0, -1);
  return [code, data.readUInt32BE(0), ...strings];
}
const ORIGINAL = 'From: a@example.org\r\nAuthentication-Results: x; spf=pass\r\nTo: b@example.test\r\nAuthentication-Results: y; dkim=pass\r\nSubject: s\r\n\r\nbody\r\n';

describe('milter modifications', () => {
  it('inserts fields put on top at 0, 1, ... in the order the pipeline wrote them', async () => {
    const before = msg(ORIGINAL);
    const after = before.prepend({ name: 'DKIM-Signature', value: 'v=1;\r\n\tb=abc' }, { name: 'X-Trace', value: 't' });
    const m = await modificationsFor(before, after, true);
    expect(m.packets.map(decode)).toEqual([
      ['i', 0, 'DKIM-Signature', ' v=1;\n\tb=abc'],
      ['i', 1, 'X-Trace', ' t'],
    ]);
    expect(m.bodyReplaced).toBe(false);
  });

  it('takes the leading space off values when the MTA did not agree to send it (no SMFIP_HDR_LEADSPC)', async () => {
    const before = msg(ORIGINAL);
    const m = await modificationsFor(before, before.prepend({ name: 'X-Trace', value: 't' }), false);
    expect(m.packets.map(decode)).toEqual([['i', 0, 'X-Trace', 't']]);
  });

  it('deletes fields bottom-up with their number among fields of the same name', async () => {
    const before = msg(ORIGINAL);
    const after = before.withFields(before.fields.filter((f) => f.key !== 'authentication-results'));
    const m = await modificationsFor(before, after, true);
    expect(m.packets.map(decode)).toEqual([
      ['m', 2, 'Authentication-Results', ''],
      ['m', 1, 'Authentication-Results', ''],
    ]);
    expect(m.removed).toEqual(['Authentication-Results', 'Authentication-Results']);
  });

  it('changes a field rewritten in place instead of deleting and inserting it', async () => {
    const before = msg(ORIGINAL);
    const fields = before.fields.map((f) => (f.key === 'subject' ? { ...f, raw: Buffer.from('Subject: new\r\n') } : f));
    const m = await modificationsFor(before, before.withFields(fields), true);
    expect(m.packets.map(decode)).toEqual([['m', 1, 'Subject', ' new']]);
  });

  it("inserts our field on top, above Postfix's Received:, when the pipeline removed a field of its name from the top (a forged Authentication-Results first in the header)", async () => {
    const before = msg(`Authentication-Results: filter.test; dkim=pass\r\n${ORIGINAL}`);
    const after = before.withFields(before.fields.slice(1)).prepend({ name: 'Authentication-Results', value: 'filter.test; spf=none' });
    const m = await modificationsFor(before, after, true);
    // Changed where the forged one stood, ours would stay below Postfix's Received:, among the sender's fields.
    expect(m.packets.map(decode)).toEqual([
      ['m', 1, 'Authentication-Results', ''],
      ['i', 0, 'Authentication-Results', ' filter.test; spf=none'],
    ]);
    expect(m.removed).toEqual(['Authentication-Results']);
    expect(m.added).toEqual(['Authentication-Results']);
  });

  it("counts Postfix's hidden Received: in the position of a field inserted below the first one the milter saw", async () => {
    const before = msg(ORIGINAL);
    const [from, ...rest] = before.fields;
    const added = msg('X-Mid: m\r\n\r\n').fields[0];
    const m = await modificationsFor(before, before.withFields([from, added, ...rest]), true);
    expect(m.packets.map(decode)).toEqual([['i', 2, 'X-Mid', ' m']]);
  });

  it('replaces a changed body in chunks of at most 65535 bytes', async () => {
    const before = msg(ORIGINAL);
    const bigBody = Buffer.alloc(150_000, 0x61);
    const after = Message.parse(memorySpool(Buffer.concat([before.headerBytes(), bigBody])));
    const m = await modificationsFor(before, after, true);
    expect(m.packets.map(decode)).toEqual([
      ['b', 65535],
      ['b', 65535],
      ['b', 150_000 - 2 * 65535],
    ]);
    expect(m.bodyReplaced).toBe(true);
  });

  it('sends no body when a rewrite left the body bytes as they were', async () => {
    const before = msg(ORIGINAL);
    const copy = msg(ORIGINAL);
    const m = await modificationsFor(before, copy, true);
    expect(m.packets).toEqual([]);
  });
});
