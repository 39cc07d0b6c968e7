/**
 * End of message on a milter listener (listener/milter/end-of-message.ts): a message that would
 * need more than MAX_HEADER_EDITS header fields removed or rewritten is refused with 550 5.6.0
 * before any modification is sent, as each one costs Postfix a pass over the header; up to
 * that many are sent.
 */
import { MAX_HEADER_EDITS } from '../../../src/listener/milter/end-of-message';
import { MilterClient, messagePackets } from '../../helpers/milter-client';
import { startHarness, type Harness } from '../../helpers/postseal';
import { waitFor } from '../../e2e/wait';

let h: Harness;
beforeAll(async () => {
  // header-sanity removes every X-Postseal-Alert a message arrives with (removeOwnFields).
  h = await startHarness({
    forwardPort: 9,
    banks: { default: { stages: ['loop-guard', 'header-sanity'] } },
    main: { listeners: [{ port: 0, bank: 'default', protocol: 'milter' }] },
  });
});
afterAll(async () => {
  await h?.close();
});

async function withForgedAlerts(n: number, queueId: string) {
  const c = await MilterClient.connect(h.app.listeners[0].port);
  await c.negotiate();
  const p = messagePackets({
    from: 'bob@remote.test',
    to: ['user@example.test'],
    macros: { E: { i: queueId } },
    header: [...Array.from({ length: n }, (): [string, string] => ['X-Postseal-Alert', ' forged']), ['From', ' <bob@remote.test>']],
    body: 'hi\r\n',
  });
  c.send(...p.envelope, ...p.content, p.eom);
  expect((await c.next()).code).toBe('c');
  const replies = await c.untilFinal();
  c.close();
  return replies;
}

it('refuses with 550 5.6.0 a message with more forged fields to remove than MAX_HEADER_EDITS, sending no removal', async () => {
  const replies = await withForgedAlerts(MAX_HEADER_EDITS + 1, 'EDITS1');
  expect(replies.map((r) => (r.code === 'y' ? r.data.toString() : r.code))).toEqual(['550 5.6.0 Message header malformed: too many fields to remove or rewrite\0']);
  const line = await waitFor('the log line', async () => h.logs.find((l) => l.msg === 'message' && l.queueId === 'EDITS1'));
  expect(line).toMatchObject({ code: 'MILTER_TOO_MANY_EDITS', reply: '550 5.6.0 Message header malformed: too many fields to remove or rewrite' });
});

it('removes MAX_HEADER_EDITS forged fields', async () => {
  const replies = await withForgedAlerts(MAX_HEADER_EDITS, 'EDITS2');
  expect(replies.filter((r) => r.code === 'm')).toHaveLength(MAX_HEADER_EDITS);
  expect(replies.at(-1)?.code).toBe('c');
});
