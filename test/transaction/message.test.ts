import { Message } from '../../src/transaction/message';
import { memorySpool } from '../../src/transaction/spool';
import { readAll } from '../helpers/streams';

const parse = (s: string) => Message.parse(memorySpool(Buffer.from(s, 'latin1')));

describe('Message', () => {
  it('keeps folded fields byte for byte and finds the body after the empty line', async () => {
    const m = parse('Subject: a\r\n  folded\r\nFrom: x@y\r\n\r\nbody\r\n');
    expect(m.fields.map((f) => f.name)).toEqual(['Subject', 'From']);
    expect(m.fields[0].raw.toString()).toBe('Subject: a\r\n  folded\r\n');
    expect(Message.value(m.fields[0])).toBe('a  folded');
    expect((await readAll(m.openBody())).toString()).toBe('body\r\n');
  });

  it('accepts bare LF header sections', async () => {
    const m = parse('A: 1\nB: 2\n\nbody\n');
    expect(m.fields).toHaveLength(2);
    expect(m.separator.toString()).toBe('\n');
    expect((await readAll(m.openRaw())).toString()).toBe('A: 1\nB: 2\n\nbody\n');
  });

  it('treats a first line that is not a field as the start of the body', async () => {
    const m = parse('no header here\r\nmore\r\n');
    expect(m.fields).toHaveLength(0);
    expect((await readAll(m.openRaw())).toString()).toBe('no header here\r\nmore\r\n');
  });

  it('says the header is incomplete when it does not end within the head, wherever the cut falls', () => {
    const header = 'A: 1\r\nB: 2\r\nFrom: late@example.com\r\n\r\nbody\r\n';
    for (let head = 1; head < header.indexOf('\r\n\r\n') + 4; head++) {
      const m = Message.parse(memorySpool(Buffer.from(header), head));
      expect([head, m.headerComplete]).toEqual([head, false]);
    }
    const whole = Message.parse(memorySpool(Buffer.from(header), header.indexOf('\r\n\r\n') + 4));
    expect(whole.headerComplete).toBe(true);
    expect(whole.get('from')).toHaveLength(1);
  });

  it('is complete when the line cut by the head cannot be a field: the body starts there', () => {
    const m = Message.parse(memorySpool(Buffer.from(`A: 1\r\n<html> ${'x'.repeat(100)}\r\n`), 20));
    expect(m.headerComplete).toBe(true);
    expect(m.fields.map((f) => f.name)).toEqual(['A']);
    expect(m.bodyOffset).toBe(6);
  });

  it('is complete for a header-only message held whole, and when a non-field line ends the header', () => {
    expect(Message.parse(memorySpool(Buffer.from('A: 1\r\nB: 2'))).headerComplete).toBe(true);
    const m = Message.parse(memorySpool(Buffer.from('A: 1\r\nnot a field\r\nB: 2\r\n'), 20));
    expect(m.headerComplete).toBe(true);
    expect(m.fields.map((f) => f.name)).toEqual(['A']);
  });

  it('prepends new fields on top and leaves the rest untouched', async () => {
    const m = parse('From: x@y\r\n\r\nb\r\n').prepend({ name: 'X-Test', value: 'v' });
    expect((await readAll(m.openRaw())).toString()).toBe('X-Test: v\r\nFrom: x@y\r\n\r\nb\r\n');
    expect(m.size).toBe(Buffer.byteLength('X-Test: v\r\nFrom: x@y\r\n\r\nb\r\n'));
  });

  it('handles a message that is only a header without a final newline', async () => {
    const m = parse('Subject: only');
    expect(m.fields).toHaveLength(1);
    expect((await readAll(m.openRaw())).toString()).toBe('Subject: only');
  });
});
