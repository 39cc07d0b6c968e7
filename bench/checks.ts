/**
 * Before timing anything, one message per path goes through a capturing smtp-sink and is
 * inspected, so the figures are known to include the work they claim: postseal's and
 * amavisd-new's DKIM signatures verify (mailauth, against the benchmark's own records), the
 * inbound path's Authentication-Results says dkim=pass, the 7-bit path sends no 8-bit body,
 * the content path's copy carries X-Virus-Scanned and X-Spam-Status (the scanners were asked).
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';
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
  /** The X-Virus-Scanned and X-Spam-Status values added on the way (clamd and spamd were asked), if any. */
  virusScanned: string | null;
  spamStatus: string | null;
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
    virusScanned: field(headerOf(delivered), 'X-Virus-Scanned'),
    spamStatus: field(headerOf(delivered), 'X-Spam-Status'),
  };
}

/** A field's value, unfolded, or null when the header has none. */
function field(header: string, name: string): string | null {
  const m = new RegExp(`^${name}:([^\\r]*(?:\\r\\n[ \\t][^\\r]*)*)`, 'im').exec(header);
  return m ? m[1].replace(/\r\n/g, '').trim() : null;
}

function headerOf(message: Buffer): string {
  const end = message.indexOf('\r\n\r\n');
  return message.subarray(0, end < 0 ? message.length : end).toString('latin1');
}

/**
 * Sends one message over SMTP (no pipelining) and returns the reply to its final dot, or to
 * the first command refused: the content path's reject check, which smtp-source cannot do
 * (it fails on any refusal).
 */
export function sendOne(port: number, message: Buffer, from: string, to: string, timeoutMs = 30000): Promise<string> {
  const data = Buffer.concat([Buffer.from(message.toString('latin1').replace(/^\./gm, '..'), 'latin1'), Buffer.from('.\r\n')]);
  const steps: (string | Buffer)[] = ['EHLO bench.example\r\n', `MAIL FROM:<${from}>\r\n`, `RCPT TO:<${to}>\r\n`, 'DATA\r\n', data];
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`no reply from 127.0.0.1:${port} within ${timeoutMs} ms`)));
    socket.once('error', reject);
    let buffered = '';
    let step = 0;
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      // A reply is complete at a line "NNN text" (no hyphen after the code).
      const m = /(?:^|\r\n)(\d{3}) [^\r\n]*\r\n$/.exec(buffered);
      if (!m) return;
      const reply = buffered.trim().split('\r\n').at(-1)!;
      buffered = '';
      const code = Number(m[1]);
      const last = step === steps.length;
      const expected = step === 0 ? 220 : step === 4 ? 354 : 250;
      if (last || code !== expected) {
        socket.end('QUIT\r\n');
        resolve(reply);
        return;
      }
      socket.write(steps[step++]);
    });
  });
}

/** From a domain without DMARC or SPF records, so that only the content checks can refuse these. */
const PROBE_FROM = 'probe@elsewhere.example';

/** One text/plain body part, its header and body (probeMessage puts a boundary before each part). */
const textPart = (text: string) => ['Content-Type: text/plain', '', text].join('\r\n');

function probeMessage(subject: string, parts: string[]): Buffer {
  const boundary = '=_bench_probe';
  const head = [`From: <${PROBE_FROM}>`, 'To: <bob@rcpt.example>', `Subject: ${subject}`, `Message-ID: <${subject.replace(/\W/g, '')}@elsewhere.example>`, 'MIME-Version: 1.0'];
  const body = [`Content-Type: multipart/mixed; boundary="${boundary}"`, '', ...parts.flatMap((p) => [`--${boundary}`, p]), `--${boundary}--`, ''];
  return Buffer.from([...head, ...body].join('\r\n'), 'latin1');
}

/**
 * The content path's refusals, not timed: an EICAR attachment and a GTUBE body must each get a
 * 5xx naming a virus or spam. Returns the problems found (empty: both refused).
 */
export async function contentRejects(port: number, eicar: string, gtube: string): Promise<string[]> {
  const attachment = [
    'Content-Type: application/octet-stream; name="eicar.com.txt"',
    'Content-Transfer-Encoding: base64',
    'Content-Disposition: attachment; filename="eicar.com.txt"',
    '',
    Buffer.from(eicar).toString('base64'),
  ].join('\r\n');
  const probes = [
    { what: 'EICAR', message: probeMessage('bench virus probe', [textPart('See the attachment.'), attachment]), want: /virus|infected/i },
    { what: 'GTUBE', message: probeMessage('bench spam probe', [textPart(gtube)]), want: /spam/i },
  ];
  const problems: string[] = [];
  for (const p of probes) {
    const reply = await sendOne(port, p.message, PROBE_FROM, 'bob@rcpt.example');
    if (!/^5\d\d/.test(reply) || !p.want.test(reply)) problems.push(`${p.what} got "${reply.slice(0, 200)}"`);
  }
  return problems;
}
