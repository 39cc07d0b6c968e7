/**
 * A large message cut into scans of whole MIME parts (src/stages/virus/pieces.ts): the pieces
 * cover every byte of the body once, in order; each scan is a MIME message no larger than
 * maxScanBytes that carries its parts byte for byte; a part too large by itself is left out
 * and named; a 10,000-part message makes few scans.
 */
import { MAX_MIME_PARTS, MimeWalker } from '../../../src/lib/mime/structure';
import { keptHeader, openScan, piecesOf, plan, type Piece } from '../../../src/stages/virus/pieces';
import { Message } from '../../../src/transaction/message';
import { memorySpool } from '../../../src/transaction/spool';

const never = new AbortController().signal;

function multipart(parts: string[], opts: { preamble?: string; epilogue?: string; boundary?: string } = {}): string {
  const b = opts.boundary ?? 'outer';
  return [`Content-Type: multipart/mixed; boundary="${b}"\r\n\r\n${opts.preamble ?? ''}`, ...parts.map((p) => `--${b}\r\n${p}\r\n`), `--${b}--\r\n${opts.epilogue ?? ''}`].join('');
}

const attachment = (name: string, bytes: number) =>
  `Content-Type: application/octet-stream; name="${name}"\r\nContent-Transfer-Encoding: base64\r\n\r\n${`${'QUJD'.repeat(19)}\r\n`.repeat(Math.ceil(bytes / 78))}`;

function messageOf(body: string): Message {
  return Message.parse(memorySpool(Buffer.from(`From: a@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n${body}`)));
}

async function bytesOf(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of it) out.push(c);
  return Buffer.concat(out);
}

async function bodyOf(m: Message): Promise<Buffer> {
  return bytesOf(m.openBody());
}

/** The leaves of a scan as our own MIME walker reads them: [header+body bytes]. */
function leavesOf(scan: Buffer): string[] {
  const header = scan.subarray(0, scan.indexOf('\r\n\r\n') + 4).toString('latin1');
  const type = /Content-Type: (.*)\r\n/.exec(header)![1];
  const walker = new MimeWalker(type, undefined);
  const body = scan.subarray(header.length);
  walker.push(body);
  walker.end(body.length);
  return walker.root.children.map((p) => body.toString('latin1', p.headerStart, p.bodyEnd));
}

describe('scanning a large message in pieces', () => {
  const body = multipart(
    [
      attachment('a.bin', 30_000),
      'Content-Type: text/plain\r\n\r\nhello',
      multipart([attachment('b.bin', 20_000), attachment('c.bin', 20_000)], { boundary: 'inner' }).replace(/^/, ''),
      attachment('d.bin', 5_000),
    ],
    {
      preamble: 'This is a multi-part message.\r\n',
      epilogue: 'after the end\r\n',
    },
  );
  const message = messageOf(body);

  it('covers every byte of the body once, in order, but the delimiter lines between siblings; leaves with their own headers, what else lies between as text', async () => {
    const pieces = (await piecesOf(message, never)).pieces;
    const raw = (await bodyOf(message)).toString('latin1');
    expect(pieces[0].start).toBe(0);
    for (let i = 1; i < pieces.length; i++) {
      const between = raw.slice(pieces[i - 1].end, pieces[i].start);
      expect(between === '' || /^\r\n--(outer|inner)\r\n$/.test(between)).toBe(true);
    }
    expect(pieces.at(-1)!.end).toBe(message.bodySize);
    expect(pieces.filter((p) => p.header === '').map((p) => p.what)).toEqual(['part 1', 'part 2', 'part 3/1', 'part 3/2', 'part 4']);
    expect(raw.slice(pieces[0].start, pieces[0].end)).toContain('This is a multi-part message.');
    expect(raw.slice(pieces.at(-1)!.start)).toContain('after the end');
  });

  it('makes scans of at most maxScanBytes that carry their parts byte for byte, each under a boundary of its own', async () => {
    const pieces = (await piecesOf(message, never)).pieces;
    const { scans, tooBig } = plan(pieces, 40_000, keptHeader(message).length);
    expect(tooBig).toEqual([]);
    expect(scans.length).toBeGreaterThan(1);
    const raw = (await bodyOf(message)).toString('latin1');
    const seen: string[] = [];
    const boundaries = new Set<string>();
    for (const s of scans) {
      const scan = await bytesOf(openScan(message, s));
      expect(scan.length).toBeLessThanOrEqual(40_000);
      // The message's own fields on top of each scan, but those that describe its body.
      expect(scan.toString('latin1').startsWith('From: a@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="=_postseal_')).toBe(true);
      boundaries.add(/boundary="([^"]+)"/.exec(scan.toString('latin1'))![1]);
      const leaves = leavesOf(scan);
      expect(leaves).toHaveLength(s.length);
      s.forEach((p, i) => {
        // A leaf keeps its own header; a gap gets a text/plain one.
        expect(leaves[i]).toBe(p.header + raw.slice(p.start, p.end));
        seen.push(raw.slice(p.start, p.end));
      });
    }
    // Every piece in exactly one scan, in order (what lies between pieces is checked above).
    expect(seen.join('')).toBe(pieces.map((p) => raw.slice(p.start, p.end)).join(''));
    expect(boundaries.size).toBe(scans.length);
  });

  it('leaves out a part larger than maxScanBytes by itself, and names it', async () => {
    const { scans, tooBig } = plan((await piecesOf(message, never)).pieces, 25_000);
    expect(tooBig.map((p: Piece) => p.what)).toEqual(['part 1']);
    expect(scans.flat().map((p) => p.what)).not.toContain('part 1');
  });

  it('sends a message that is not multipart as one piece, with its own Content-Type and encoding', async () => {
    const m = messageOf(`Content-Type: application/zip; name="a.zip"\r\nContent-Transfer-Encoding: base64\r\n\r\n${'QUJD\r\n'.repeat(10)}`);
    const pieces = (await piecesOf(m, never)).pieces;
    expect(pieces).toHaveLength(1);
    const scan = (await bytesOf(openScan(m, pieces))).toString('latin1');
    expect(scan).toMatch(/\r\n\r\n--=_postseal_[0-9a-f]{28}\r\nContent-Type: application\/zip; name="a\.zip"\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n/);
  });

  it('makes few scans of a 10,000-part message, in one pass of the body each', async () => {
    const many = messageOf(multipart(Array.from({ length: 10_000 }, (_, i) => `Content-Type: text/plain\r\n\r\npart ${i}`)));
    const pieces = (await piecesOf(many, never)).pieces;
    expect(pieces.filter((p) => p.header === '')).toHaveLength(10_000);
    const { scans, tooBig } = plan(pieces, 256 * 1024);
    expect(tooBig).toEqual([]);
    expect(scans.length).toBeLessThanOrEqual(Math.ceil(many.bodySize / (128 * 1024)));
  });

  it('does not cut a message of more parts than the walker makes (MAX_MIME_PARTS; 2,000,000 empty parts took 800 MB of heap)', async () => {
    const body = `Content-Type: multipart/mixed; boundary="b"\r\n\r\n${'--b\r\n\r\nx\r\n'.repeat(MAX_MIME_PARTS + 10)}--b--\r\n`;
    const cut = await piecesOf(messageOf(body), never);
    expect(cut).toEqual({
      pieces: [],
      notCut: `the message: more than ${MAX_MIME_PARTS} MIME parts: the rest is not walked`,
      depth: 1,
      pieceDepth: 1,
      clamdMisreads: `the message: more than ${MAX_MIME_PARTS} MIME parts: the rest is not walked`,
    });
  });

  it('says the rest of a message past the part cap is unknown also when its multipart is ambiguous for another reason first', async () => {
    const body = `Content-Type: multipart/mixed; boundary="b"; boundary="c"\r\n\r\n${'--b\r\n\r\nx\r\n'.repeat(MAX_MIME_PARTS + 10)}--b--\r\n`;
    const cut = await piecesOf(messageOf(body), never);
    expect(cut.notCut).toMatch(/two boundary parameters/);
    expect(cut.clamdMisreads).toMatch(/not walked into/);
  });

  it('does not cut a message that mail readers split differently, saying where', async () => {
    const odd = messageOf(multipart(['Content-Type: text/plain\r\n\r\nhi\r\n--outer\r', attachment('a.bin', 100)]));
    expect(await piecesOf(odd, never)).toEqual({
      pieces: [],
      notCut: expect.stringMatching(/^mail readers split it differently \(part 1: a line that some readers take for a boundary/),
      depth: expect.any(Number),
      pieceDepth: 1,
      clamdMisreads: null,
    });
  });
});
