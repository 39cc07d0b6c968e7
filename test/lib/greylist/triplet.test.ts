import { clientNetwork, normaliseSender, tripletKey } from '../../../src/lib/greylist';

describe('normaliseSender (postgrey 1.37 do_sender_substitutions, plus SRS)', () => {
  it.each([
    ['list-bounces+bob=rcpt.example@lists.example', 'list-bounces@lists.example'],
    ['bounce-12345-678@news.example', 'bounce-#-#@news.example'],
    ['prvs=1234567890=alice@sender.example', 'alice@sender.example'],
    ['prvs=alice=1234567890@sender.example', 'alice@sender.example'],
    ['SRS0=HHH=TT=orig.example=alice@fwd.example', 'SRS=orig.example=alice@fwd.example'],
    ['SRS1=HHH=fwd1.example==HHH=TT=orig.example=alice@fwd2.example', 'SRS=orig.example=alice@fwd2.example'],
    ['user42@sender.example', 'user42@sender.example'],
    ['', ''],
  ])('folds %s to %s', (sender, expected) => {
    expect(normaliseSender(sender)).toBe(expected);
  });
});

describe('clientNetwork', () => {
  it('takes the /24 of an IPv4 client and the /64 of an IPv6 one', () => {
    expect(clientNetwork('192.0.2.77', 24, 64)).toBe('192.0.2.0');
    expect(clientNetwork('2001:db8:1:2:3:4:5:6', 24, 64)).toBe('2001:db8:1:2::');
    expect(clientNetwork('::ffff:198.51.100.9', 24, 64)).toBe('198.51.100.0');
    expect(clientNetwork('192.0.2.77', 32, 128)).toBe('192.0.2.77');
    expect(clientNetwork('192.0.2.77', 16, 64)).toBe('192.0.0.0');
  });

  it('keeps something that is no IP address as it is', () => {
    expect(clientNetwork('unknown', 24, 64)).toBe('unknown');
  });
});

it('makes one lower-case triplet of two mails of one mailing list from neighbouring hosts', () => {
  const a = tripletKey(clientNetwork('192.0.2.1', 24, 64), 'List-Bounces+X=y@Lists.example', 'Bob@rcpt.example');
  const b = tripletKey(clientNetwork('192.0.2.2', 24, 64), 'list-bounces+z=w@lists.example', 'bob@RCPT.example');
  expect(a).toBe(b);
  expect(a).toBe('192.0.2.0/list-bounces@lists.example/bob@rcpt.example');
});
