/**
 * discardEhloKeywords, one keyword at a time over real sockets: the keyword is not announced,
 * and its parameters are then refused (555 5.5.4, as Postfix answers an unannounced one) or,
 * for SIZE, not checked; nothing refused reaches the downstream.
 */
import { startHarness, type Harness } from '../helpers/postseal';
import { startScriptedServer } from '../helpers/scripted-server';
import { TestClient } from '../helpers/smtp-client';

const EHLO = '250-downstream\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 DSN';
const MSG = 'From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n';

async function hiding(keyword: string, run: (c: TestClient, ehlo: string, downCommands: () => string[]) => Promise<void>): Promise<void> {
  const down = await startScriptedServer({ EHLO });
  const h: Harness = await startHarness({ forwardPort: down.port, banks: { default: { discardEhloKeywords: [keyword], maxMessageSizeBytes: 4096 } } });
  const c = await TestClient.connect(h.app.portOf('default'));
  try {
    const ehlo = await c.cmd('EHLO client.example');
    expect(ehlo.code).toBe(250);
    await run(c, ehlo.raw, () => down.commands.filter((l) => /^(MAIL|RCPT)/.test(l)));
  } finally {
    await c.quit();
    await h.close();
    await down.close();
  }
}

describe('EHLO keywords hidden per bank (discardEhloKeywords)', () => {
  it('announces every keyword when none is hidden', async () => {
    const down = await startScriptedServer({ EHLO });
    const h = await startHarness({ forwardPort: down.port, banks: { default: { maxMessageSizeBytes: 4096 } } });
    const c = await TestClient.connect(h.app.portOf('default'));
    const ehlo = await c.cmd('EHLO client.example');
    await c.quit();
    await h.close();
    await down.close();
    for (const k of ['8BITMIME', 'SMTPUTF8', 'PIPELINING', 'DSN', 'SIZE 4096']) expect(ehlo.raw).toContain(`250-${k}`);
  });

  it('8BITMIME hidden: not announced, and BODY= is refused with 555 5.5.4', async () => {
    await hiding('8BITMIME', async (c, ehlo, down) => {
      expect(ehlo).not.toMatch(/8BITMIME/);
      const refused = await c.cmd('MAIL FROM:<a@example.org> BODY=8BITMIME');
      expect([refused.code, refused.text]).toEqual([555, '5.5.4 Unsupported option (BODY)']);
      expect((await c.cmd('MAIL FROM:<a@example.org> BODY=7BIT')).code).toBe(555);
      expect((await c.cmd('MAIL FROM:<b@example.org>')).code).toBe(250);
      expect((await c.cmd('RCPT TO:<c@example.net>')).code).toBe(250);
      expect(down()).toEqual(['MAIL FROM:<b@example.org>', 'RCPT TO:<c@example.net>']);
    });
  });

  it('SMTPUTF8 hidden: not announced, the SMTPUTF8 parameter is refused and a UTF-8 sender gets 4xx', async () => {
    await hiding('SMTPUTF8', async (c, ehlo, down) => {
      expect(ehlo).not.toMatch(/SMTPUTF8/);
      const refused = await c.cmd('MAIL FROM:<ü@münchen.example> SMTPUTF8');
      expect([refused.code, refused.text]).toEqual([555, '5.5.4 Unsupported option (SMTPUTF8)']);
      expect((await c.cmd('MAIL FROM:<ü@münchen.example>')).code).toBe(451);
      expect(down()).toEqual([]);
    });
  });

  it('PIPELINING hidden: not announced, and a client that pipelines anyway is answered in order', async () => {
    await hiding('PIPELINING', async (c, ehlo, down) => {
      expect(ehlo).not.toMatch(/PIPELINING/);
      c.write('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n');
      const replies = [await c.read(), await c.read(), await c.read()];
      expect(replies.map((r) => r.code)).toEqual([250, 250, 354]);
      c.write(`${MSG}.\r\n`);
      expect((await c.read()).code).toBe(250);
      expect(down()).toEqual(['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.net>']);
    });
  });

  it('DSN hidden: not announced, and RET, ENVID, NOTIFY and ORCPT are each refused with 555 5.5.4', async () => {
    await hiding('DSN', async (c, ehlo, down) => {
      expect(ehlo).not.toMatch(/DSN/);
      expect((await c.cmd('MAIL FROM:<a@example.org> RET=HDRS')).code).toBe(555);
      expect((await c.cmd('MAIL FROM:<a@example.org> ENVID=abc')).code).toBe(555);
      expect((await c.cmd('MAIL FROM:<a@example.org>')).code).toBe(250);
      expect((await c.cmd('RCPT TO:<b@example.net> NOTIFY=NEVER')).code).toBe(555);
      expect((await c.cmd('RCPT TO:<b@example.net> ORCPT=rfc822;b@example.net')).code).toBe(555);
      expect((await c.cmd('RCPT TO:<b@example.net>')).code).toBe(250);
      expect(down()).toEqual(['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.net>']);
    });
  });

  it('SIZE hidden: not announced, SIZE= over the limit is not checked at MAIL nor passed on, and the limit holds after the dot', async () => {
    await hiding('SIZE', async (c, ehlo, down) => {
      expect(ehlo).not.toMatch(/SIZE/);
      expect((await c.cmd('MAIL FROM:<a@example.org> SIZE=999999')).code).toBe(250);
      expect((await c.cmd('RCPT TO:<b@example.net>')).code).toBe(250);
      expect(down()).toEqual(['MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.net>']);
      await c.cmd('DATA');
      c.write(`${MSG}${'x'.repeat(5000)}\r\n.\r\n`);
      const final = await c.read();
      expect([final.code, final.text.slice(0, 6)]).toEqual([552, '5.3.4 ']);
    });
  });
});
