/**
 * MAIL and RCPT over real sockets: what the downstream reads is what the upstream wrote,
 * byte for byte (a scripted downstream records the command lines), and every refusal has
 * its enhanced status code. Each case here bounced or was rewritten before postseal read
 * these commands itself.
 */
import { startHarness, type Harness } from '../../helpers/postseal';
import { startScriptedServer } from '../../helpers/scripted-server';
import { type Reply, TestClient } from '../../helpers/smtp-client';

const EHLO = '250-downstream\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 DSN';
const MSG = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

describe('MAIL and RCPT passed downstream as written', () => {
  let down: Awaited<ReturnType<typeof startScriptedServer>>;
  let h: Harness;
  beforeAll(async () => {
    down = await startScriptedServer({ EHLO });
    h = await startHarness({ forwardPort: down.port, banks: { default: { maxMessageSizeBytes: 100000 } } });
  });
  afterAll(async () => {
    await h.close();
    await down.close();
  });

  /** Sends MAIL, the RCPTs and a message; returns the replies and the command lines the downstream got. */
  async function transaction(mail: string, rcpts: string[]) {
    const before = down.commands.length;
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO client.example');
    const m = await c.cmd(mail);
    const r = [];
    for (const rcpt of rcpts) r.push(await c.cmd(rcpt));
    let final: Reply | undefined;
    if (m.code === 250 && r.some((x) => x.code === 250)) {
      await c.cmd('DATA');
      c.write(`${MSG}.\r\n`);
      final = await c.read();
    }
    await c.quit();
    const seen = down.commands.slice(before).filter((l) => /^(MAIL|RCPT) /i.test(l));
    return { mail: m, rcpts: r, final, seen };
  }

  const cases: [string, string, string][] = [
    ['a sub-address with its ORCPT still xtext', 'RCPT TO:<bob+tag@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Btag@example.net', ''],
    ['an ORCPT with = and a space encoded', 'RCPT TO:<a=b@example.net> ORCPT=rfc822;a+3Db+20c@example.net', ''],
    ['a quoted local part with a space', 'RCPT TO:<"john doe"@example.net>', ''],
    ['a quoted local part with an escaped quote', 'RCPT TO:<"a\\"b"@example.net>', ''],
    ['an underscore in the domain', 'RCPT TO:<a@my_host.example.net>', ''],
    ['an IDN domain as A-labels', 'RCPT TO:<user@xn--mnchen-3ya.example> ORCPT=rfc822;user@xn--mnchen-3ya.example', ''],
    ['postmaster without a domain', 'RCPT TO:<postmaster>', ''],
    ['NOTIFY=NEVER in lower case', 'RCPT TO:<c@example.net> NOTIFY=never', ''],
    ['an ORCPT of type utf-8', 'RCPT TO:<d@example.net> ORCPT=utf-8;d\\x{E9}@example.net', ''],
    ['an ORCPT of another address type', 'RCPT TO:<e@example.net> ORCPT=x400;+2Fc+3Dus+2F', ''],
  ];
  it.each(cases)('passes on %s unchanged', async (_name, rcpt) => {
    const r = await transaction('MAIL FROM:<s@example.org>', [rcpt]);
    expect(r.rcpts[0].code).toBe(250);
    expect(r.final?.code).toBe(250);
    expect(r.seen[1]).toBe(rcpt);
  });

  it('passes ENVID on still encoded, with + and = in it, and RET, BODY and the sender unchanged', async () => {
    const mail = 'MAIL FROM:<list+bounces=x@example.org> BODY=8BITMIME RET=HDRS ENVID=a+2Bb+3Dc';
    const r = await transaction(mail, ['RCPT TO:<a@example.net>']);
    expect(r.final?.code).toBe(250);
    expect(r.seen[0]).toBe(mail);
  });

  it('does not let an encoded space in ENVID or ORCPT add a parameter downstream', async () => {
    const r = await transaction('MAIL FROM:<s@example.org> ENVID=x+20XVERP', ['RCPT TO:<a@example.net> ORCPT=rfc822;a@example.net+20NOTIFY+3DNEVER']);
    expect(r.final?.code).toBe(250);
    expect(r.seen).toEqual(['MAIL FROM:<s@example.org> ENVID=x+20XVERP', 'RCPT TO:<a@example.net> ORCPT=rfc822;a@example.net+20NOTIFY+3DNEVER']);
  });

  it('passes SMTPUTF8 mail with a U-label address on with SMTPUTF8', async () => {
    const r = await transaction('MAIL FROM:<jörg@münchen.example> SMTPUTF8', ['RCPT TO:<ü@münchen.example>']);
    expect(r.final?.code).toBe(250);
    // The scripted downstream records bytes as latin1: read them back as UTF-8.
    expect(r.seen.map((l) => Buffer.from(l, 'latin1').toString('utf8'))).toEqual(['MAIL FROM:<jörg@münchen.example> SMTPUTF8', 'RCPT TO:<ü@münchen.example>']);
  });

  it('drops a source route and keeps the null sender', async () => {
    const r = await transaction('MAIL FROM:<>', ['RCPT TO:<@relay.example:a@example.net>']);
    expect(r.final?.code).toBe(250);
    expect(r.seen).toEqual(['MAIL FROM:<>', 'RCPT TO:<a@example.net>']);
  });

  it('answers an address it cannot read with 4xx and an enhanced code, never 5xx', async () => {
    const r = await transaction('MAIL FROM:<"unterminated@example.org>', []);
    expect(r.mail.code).toBe(451);
    expect(r.mail.text).toMatch(/^4\.1\.7 /);
    const r2 = await transaction('MAIL FROM:<s@example.org>', ['RCPT TO:<a@exämple.net>']);
    expect(r2.rcpts[0].code).toBe(451);
    expect(r2.rcpts[0].text).toMatch(/^4\.1\.3 .*SMTPUTF8/);
    expect(h.logs.some((l) => l.msg === 'MAIL refused' && l.reply === 'senderNotUnderstood')).toBe(true);
  });

  it('refuses a bad parameter value with 501 5.5.4 and an unknown one with 555 5.5.4, as Postfix does', async () => {
    expect((await transaction('MAIL FROM:<s@example.org> ENVID=a+zz', [])).mail.text).toMatch(/^5\.5\.4 /);
    expect((await transaction('MAIL FROM:<s@example.org> RET=ALL', [])).mail.code).toBe(501);
    expect((await transaction('MAIL FROM:<s@example.org> XVERP', [])).mail.code).toBe(555);
    const r = await transaction('MAIL FROM:<s@example.org>', ['RCPT TO:<a@example.net> ORCPT=rfc822;a+2@example.net', 'RCPT TO:<a@example.net> NOTIFY=NEVER,SUCCESS']);
    expect(r.rcpts.map((x) => [x.code, x.text.slice(0, 5)])).toEqual([
      [501, '5.5.4'],
      [501, '5.5.4'],
    ]);
    // No recipient was accepted, so no transaction was opened downstream.
    expect(r.seen).toEqual([]);
  });

  it('refuses SIZE over the limit at MAIL with 552 5.3.4', async () => {
    const r = await transaction('MAIL FROM:<s@example.org> SIZE=100001', []);
    expect(r.mail.code).toBe(552);
    expect(r.mail.text).toMatch(/^5\.3\.4 /);
    expect(r.seen).toEqual([]);
    expect((await transaction('MAIL FROM:<s@example.org> SIZE=100000', ['RCPT TO:<a@example.net>'])).final?.code).toBe(250);
  });

  it('answers MAIL itself, RCPT with the downstream reply, and RCPT before MAIL with 503 5.5.1', async () => {
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO client.example');
    expect((await c.cmd('RCPT TO:<a@example.net>')).raw).toBe('503 5.5.1 Error: need MAIL command\n');
    expect((await c.cmd('MAIL FROM:<s@example.org>')).raw).toBe('250 2.1.0 Ok\n');
    expect((await c.cmd('MAIL FROM:<s@example.org>')).raw).toBe('503 5.5.1 Error: nested MAIL command\n');
    expect((await c.cmd('RCPT TO:<a@example.net>')).raw).toBe('250 2.1.5 Ok\n');
    await c.quit();
  });
});

describe('a downstream without SMTPUTF8', () => {
  it('gets no SMTPUTF8 mail: the recipients hear 451 (Postfix retries), never a 553 bounce', async () => {
    const down = await startScriptedServer({ EHLO: '250-downstream\r\n250-8BITMIME\r\n250 DSN' });
    const h = await startHarness({ forwardPort: down.port });
    const c = await TestClient.connect(h.app.portOf('default'));
    await c.cmd('EHLO client.example');
    expect((await c.cmd('MAIL FROM:<jörg@münchen.example> SMTPUTF8')).code).toBe(250);
    const r = await c.cmd('RCPT TO:<ü@münchen.example>');
    await c.quit();
    await h.close();
    await down.close();
    expect(r.code).toBe(451);
    expect(r.text).toMatch(/^4\.4\.0 .*SMTPUTF8/);
    expect(down.commands.filter((l) => l.startsWith('MAIL'))).toEqual([]);
  });
});

describe('EHLO keywords a bank hides', () => {
  it('announces no SIZE at all when SIZE is discarded, checks no SIZE= at MAIL, and still enforces the limit after the dot', async () => {
    const down = await startScriptedServer({ EHLO });
    const h = await startHarness({ forwardPort: down.port, banks: { default: { maxMessageSizeBytes: 2048, discardEhloKeywords: ['SIZE', 'DSN'] } } });
    const c = await TestClient.connect(h.app.portOf('default'));
    const ehlo = await c.cmd('EHLO client.example');
    expect(ehlo.raw).not.toMatch(/SIZE/);
    expect(ehlo.raw).not.toMatch(/DSN/);
    expect((await c.cmd('MAIL FROM:<s@example.org> SIZE=999999')).code).toBe(250);
    expect((await c.cmd('RCPT TO:<a@example.net> NOTIFY=NEVER')).code).toBe(555);
    expect((await c.cmd('RCPT TO:<a@example.net>')).code).toBe(250);
    await c.cmd('DATA');
    c.write(`${MSG}${'x'.repeat(3000)}\r\n.\r\n`);
    const final = await c.read();
    await c.quit();
    await h.close();
    await down.close();
    expect(final.code).toBe(552);
    expect(final.text).toMatch(/^5\.3\.4 /);
  });
});
