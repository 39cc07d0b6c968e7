import { DotStuffer } from '../../src/reinject/smtp-client';

function stuff(chunks: string[], dots = true): string {
  const s = new DotStuffer(dots);
  return chunks.map((c) => s.push(Buffer.from(c, 'latin1')).toString('latin1')).join('') + s.end().toString('latin1');
}

describe('DotStuffer', () => {
  it('doubles a leading dot on every line (RFC 5321 4.5.2)', () => {
    expect(stuff(['.a\r\nb\r\n..c\r\n'])).toBe('..a\r\nb\r\n...c\r\n.\r\n');
  });

  it('finds line starts across chunk boundaries', () => {
    expect(stuff(['a\r', '\n', '.b\r\n'])).toBe('a\r\n..b\r\n.\r\n');
    expect(stuff(['a\r\n', '.', 'b\r\n'])).toBe('a\r\n..b\r\n.\r\n');
  });

  it('turns bare LF into CRLF, also when the CR ended the previous chunk', () => {
    expect(stuff(['a\nb\n'])).toBe('a\r\nb\r\n.\r\n');
    expect(stuff(['a\r', '\nb\n\n'])).toBe('a\r\nb\r\n\r\n.\r\n');
  });

  it('ends an unterminated last line before the final dot', () => {
    expect(stuff(['no newline'])).toBe('no newline\r\n.\r\n');
  });

  it('hands back a chunk that needs no change as it is, without a copy', () => {
    const chunk = Buffer.from('From: a@example.org\r\n\r\nline one\r\nline. two\r\n');
    expect(new DotStuffer().push(chunk)).toBe(chunk);
  });

  it('passes an empty message as just the final dot', () => {
    expect(stuff([])).toBe('.\r\n');
  });
});

describe('DotStuffer for BDAT (line endings only)', () => {
  it('leaves leading dots alone and adds no final dot', () => {
    expect(stuff(['.a\r\n..b\r\n'], false)).toBe('.a\r\n..b\r\n');
  });

  it('turns bare LF into CRLF, and a CR at the end of one chunk with the LF in the next stays one CRLF', () => {
    expect(stuff(['a\nb\r', '\nc\r', 'd\n'], false)).toBe('a\r\nb\r\nc\rd\r\n');
  });

  it('ends an unterminated last line with CRLF, and leaves an empty message empty', () => {
    expect(stuff(['no newline'], false)).toBe('no newline\r\n');
    expect(stuff(['ends with CR\r'], false)).toBe('ends with CR\r\r\n');
    expect(stuff([], false)).toBe('');
  });
});
