import fc from 'fast-check';
import { parseMail, parseRcpt, type Announced } from '../../../src/lib/envelope/commands';
import { mailCommand, rcptCommand } from '../../../src/reinject/downstream-transaction';
import { encodeXtext } from '../../../src/lib/envelope/xtext';

const ALL: Announced = { eightbitmime: true, dsn: true, smtputf8: true, size: 1000 };
const DOWN = new Map([
  ['8BITMIME', ''],
  ['SMTPUTF8', ''],
  ['DSN', ''],
]);
const line = (s: string) => Buffer.from(s, 'utf8');

/** Local parts as Postfix writes them: dot-atoms, or quoted strings with escapes. */
const atom = fc.string({ unit: fc.constantFrom(..."abcXYZ0189!#$%&'*+-/=?^_`{|}~"), minLength: 1, maxLength: 10 });
const localPart = fc.oneof(
  fc.array(atom, { minLength: 1, maxLength: 3 }).map((a) => a.join('.')),
  fc.string({ unit: fc.constantFrom(...'ab <>@,;:"\\.()'), maxLength: 12 }).map((q) => `"${q.replace(/["\\]/g, (c) => `\\${c}`)}"`),
);
const label = fc.string({ unit: fc.constantFrom(...'abcxyz019-_'), minLength: 1, maxLength: 8 }).filter((l) => !l.startsWith('-') && !l.endsWith('-'));
const domain = fc.oneof(
  fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => `${l.join('.')}.example`),
  fc.constant('xn--mnchen-3ya.example'),
  fc.constant('[192.0.2.1]'),
);
const address = fc.tuple(localPart, domain).map(([l, d]) => `${l}@${d}`);

describe('MAIL and RCPT command lines', () => {
  it('round trip: any address, ENVID and ORCPT Postfix could write is parsed and written again byte for byte', () => {
    fc.assert(
      fc.property(
        address,
        address,
        fc.string({ minLength: 1, maxLength: 100 }).filter((t) => /^[\x20-\x7e]+$/.test(t)),
        fc.constantFrom(undefined, 'FULL', 'HDRS'),
        (from, to, envid, ret) => {
          const mailLine = [`MAIL FROM:<${from}>`, ...(ret ? [`RET=${ret}`] : []), `ENVID=${encodeXtext(envid)}`].join(' ');
          const mail = parseMail(line(mailLine), ALL);
          expect(mail).not.toHaveProperty('refused');
          if ('refused' in mail) return;
          expect(mailCommand({ mailFrom: mail.address, smtputf8: mail.smtputf8, ret: mail.ret, envid: mail.envid }, DOWN)).toBe(mailLine);
          const rcptLine = `RCPT TO:<${to}> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;${encodeXtext(to)}`;
          const rcpt = parseRcpt(line(rcptLine), ALL, false);
          expect(rcpt).not.toHaveProperty('refused');
          if ('refused' in rcpt) return;
          expect(rcptCommand(rcpt, DOWN)).toBe(rcptLine);
        },
      ),
      { numRuns: 400 },
    );
  });

  it('never turns a line into one with more parameters than it had', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (junk) => {
        const r = parseRcpt(line(`RCPT TO:<a@example.net> ORCPT=rfc822;${junk}`), ALL, false);
        if ('refused' in r) return;
        expect(rcptCommand(r, DOWN).split(' ')).toHaveLength(3);
      }),
    );
  });

  it('never throws, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
        const b = Buffer.concat([Buffer.from('MAIL FROM:<'), Buffer.from(bytes)]);
        parseMail(b, ALL);
        parseRcpt(Buffer.concat([Buffer.from('RCPT TO:<'), Buffer.from(bytes)]), ALL, true);
      }),
    );
  });

  it('keeps A-labels and takes U-labels only with SMTPUTF8', () => {
    expect(parseRcpt(line('RCPT TO:<u@xn--mnchen-3ya.example>'), ALL, false)).toEqual({ address: 'u@xn--mnchen-3ya.example' });
    expect(parseRcpt(line('RCPT TO:<u@münchen.example>'), ALL, false)).toMatchObject({ refused: 'recipientNotUnderstood' });
    expect(parseRcpt(line('RCPT TO:<u@münchen.example>'), ALL, true)).toEqual({ address: 'u@münchen.example' });
    expect(parseMail(line('MAIL FROM:<ü@münchen.example>'), ALL)).toMatchObject({ refused: 'senderNotUnderstood' });
  });

  it('refuses parameters of keywords the listener did not announce', () => {
    const none: Announced = { eightbitmime: false, dsn: false, smtputf8: false, size: 0 };
    expect(parseMail(line('MAIL FROM:<a@b.example> ENVID=x'), none)).toMatchObject({ refused: 'unsupportedParameter' });
    expect(parseMail(line('MAIL FROM:<a@b.example> SMTPUTF8'), none)).toMatchObject({ refused: 'unsupportedParameter' });
    expect(parseMail(line('MAIL FROM:<a@b.example> BODY=8BITMIME'), none)).toMatchObject({ refused: 'unsupportedParameter', detail: 'BODY' });
    expect(parseRcpt(line('RCPT TO:<a@b.example> NOTIFY=NEVER'), none, false)).toMatchObject({ refused: 'unsupportedParameter' });
    // SIZE not announced: not checked.
    expect(parseMail(line('MAIL FROM:<a@b.example> SIZE=99999999'), none)).toEqual({ address: 'a@b.example', smtputf8: false });
  });

  it('refuses a parameter given twice and one without its value', () => {
    expect(parseMail(line('MAIL FROM:<a@b.example> RET=FULL RET=HDRS'), ALL)).toMatchObject({ refused: 'badParameter' });
    expect(parseMail(line('MAIL FROM:<a@b.example> ENVID='), ALL)).toMatchObject({ refused: 'badParameter' });
    expect(parseMail(line('MAIL FROM:<a@b.example> BODY=BINARYMIME'), ALL)).toMatchObject({ refused: 'badParameter' });
  });

  it('reads a space after the colon and lower-case verbs, as clients write them', () => {
    expect(parseMail(line('mail from: <a@b.example>'), ALL)).toEqual({ address: 'a@b.example', smtputf8: false });
    expect(parseRcpt(line('Rcpt To:<a@b.example>'), ALL, false)).toEqual({ address: 'a@b.example' });
  });
});
