/**
 * The banned stage in postseal over real sockets: a banned zip member is refused at the end
 * of DATA with 554 5.7.0 naming the kind only, the log line names the part and the rule, and a
 * banned-files lover's copy reaches the sink with X-Postseal-Alert on top. A RAR is unpacked
 * by the real lsar and unar, which the default decoders.use (auto) finds installed.
 */
import { file, make7z, makeRar, makeZip, messageWith } from '../../helpers/archives';
import { startHarness, type Harness } from '../../helpers/postseal';
import { startSink, type Sink } from '../../helpers/sink';
import { TestClient } from '../../helpers/smtp-client';

let sink: Sink;
let h: Harness;

beforeAll(async () => {
  sink = await startSink();
  h = await startHarness({
    forwardPort: sink.port,
    banks: { default: { stages: ['loop-guard', 'header-sanity', 'banned'], loopGuard: { traceHeader: false }, banned: { lovers: ['lover@example.net'] } } },
  });
});

afterAll(async () => {
  await h.close();
  await sink.close();
});

async function send(to: string, data: Buffer) {
  const c = await TestClient.connect(h.app.portOf('default'));
  const r = await c.send({ from: 'a@example.org', to: [to], data });
  await c.quit();
  return r;
}

const zipped = () => messageWith([file('invoice.zip', makeZip({ 'invoice.pdf.exe': 'MZ' }), 'application/zip')]);

describe('banned over SMTP', () => {
  it('refuses invoice.pdf.exe in a zip with 554 5.7.0 and logs the part path and the rule', async () => {
    const before = sink.received.length;
    const r = await send('bob@example.net', zipped());
    expect(r.final?.code).toBe(554);
    expect(r.final?.text).toBe('5.7.0 Message content rejected: banned content (.exe)');
    expect(sink.received.length).toBe(before);
    const line = h.logLines.find((l) => l.includes('BANNED_FILE'));
    expect(line).toMatch(/part 2\/1 name \\"invoice\.pdf\.exe\\".*rule 1 deny/);
  });

  it('delivers to a banned-files lover with X-Postseal-Alert', async () => {
    const r = await send('lover@example.net', zipped());
    expect(r.final?.code).toBe(250);
    const got = sink.received.at(-1)!.data.toString('latin1');
    expect(got.startsWith('X-Postseal-Alert: BANNED, message contains .exe (part 2/1)\r\n')).toBe(true);
  });

  it('refuses a program inside a RAR, unpacked by unar as decoders.use auto finds it, and logs the member path', async () => {
    const before = sink.received.length;
    const rar = makeRar([{ name: 'scan.pdf', data: Buffer.concat([Buffer.from('MZ'), Buffer.alloc(200)]) }]);
    const r = await send('bob@example.net', messageWith([file('scans.rar', rar, 'application/vnd.rar')]));
    expect(r.final?.text).toBe('5.7.0 Message content rejected: banned content (.exe-ms)');
    expect(sink.received.length).toBe(before);
    expect(h.logLines.find((l) => l.includes('scan.pdf'))).toMatch(/part 2\/1 name \\"scan\.pdf\\" type \.exe,\.exe-ms/);
  });

  it('delivers a 7z of documents after looking inside', async () => {
    const r = await send('bob@example.net', messageWith([file('report.7z', make7z({ 'report.txt': 'quarterly figures\n' }))]));
    expect(r.final?.code).toBe(250);
  });
});
