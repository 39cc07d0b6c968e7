/**
 * The milter's envelope (src/listener/milter/envelope.ts) from SMFIC_MAIL / SMFIC_RCPT
 * arguments as Postfix sends them: the address with or without angle brackets, then the ESMTP
 * parameters. The values must reach the Transaction exactly as the client wrote them (ORCPT
 * still xtext-encoded, user+tag, quoted and UTF-8 addresses), as on the SMTP path.
 */
import { mailOf, rcptOf } from '../../../src/listener/milter/envelope';

describe('milter envelope', () => {
  it('keeps a user+tag recipient with Postfix ORCPT and NOTIFY as written', () => {
    expect(rcptOf(['<user+tag@example.test>', 'NOTIFY=SUCCESS,FAILURE', 'ORCPT=rfc822;user+2Btag@example.test'], false)).toEqual({
      address: 'user+tag@example.test',
      notify: 'SUCCESS,FAILURE',
      orcpt: 'rfc822;user+2Btag@example.test',
    });
  });

  it('keeps ENVID, RET and BODY, and ignores the parameters a filter has no use for (SIZE, AUTH)', () => {
    expect(mailOf(['<bounce+id@example.org>', 'SIZE=1234', 'BODY=8BITMIME', 'RET=HDRS', 'ENVID=QQ314159', 'AUTH=<>'])).toEqual({
      address: 'bounce+id@example.org',
      body: '8BITMIME',
      smtputf8: false,
      ret: 'HDRS',
      envid: 'QQ314159',
    });
  });

  it('reads a quoted local part and a UTF-8 address with SMTPUTF8', () => {
    expect(mailOf(['<"john doe"@example.org>']).address).toBe('"john doe"@example.org');
    const mail = mailOf(['<jürgen@bücher.example>', 'SMTPUTF8']);
    expect(mail).toMatchObject({ address: 'jürgen@bücher.example', smtputf8: true });
    expect(rcptOf(['<zoë@xn--bcher-kva.example>'], true).address).toBe('zoë@xn--bcher-kva.example');
  });

  it('keeps the null sender, and an address its parser cannot read as sent instead of refusing it', () => {
    expect(mailOf(['<>']).address).toBe('');
    // Postfix has accepted the command already: the milter does not second-guess it.
    expect(rcptOf(['<not an address>'], false).address).toBe('not an address');
  });
});
