/**
 * The rules as amavisd applies them (the first rule in the list that matches any key on the
 * part's path decides), the keys each `on` sees, and the name clean-up before matching.
 */
import { newNode, type ContentNode } from '../../../src/lib/archive/expand';
import { extensionOf, forLog, isDisguised, normalizeName } from '../../../src/stages/banned/names';
import { compileRules, decideLeaves, kindOf } from '../../../src/stages/banned/rules';

function tree(): ContentNode {
  const root = newNode('', [], ['multipart/mixed']);
  const zip = newNode('2', ['tools.zip'], ['application/zip']);
  zip.types = ['zip'];
  const exe = newNode('2/1', ['setup.exe'], []);
  exe.types = ['exe', 'exe-ms'];
  zip.children.push(exe);
  const text = newNode('1', [], ['text/plain']);
  text.types = ['txt'];
  root.children.push(text, zip);
  return root;
}

function decisions(rules: Parameters<typeof compileRules>[0]) {
  return decideLeaves(compileRules(rules), tree(), { tests: 0 }).map(({ node, match }) => [
    node.path,
    match ? `${match.rule.allow ? 'allow' : 'deny'} ${match.rule.number} ${kindOf(match)}` : null,
  ]);
}

describe('banned rules', () => {
  it('let the earlier rule win whether it matches the part or the archive around it', () => {
    expect(
      decisions([
        { deny: '\\.exe$', on: 'name' },
        { allow: '^\\.zip$', on: 'type' },
      ]),
    ).toEqual([
      ['1', null],
      ['2/1', 'deny 1 .exe'],
    ]);
    expect(
      decisions([
        { allow: '^\\.zip$', on: 'type' },
        { deny: '\\.exe$', on: 'name' },
      ]),
    ).toEqual([
      ['1', null],
      ['2/1', 'allow 1 .zip'],
    ]);
  });

  it('match each kind of key only where `on` says, and all of them for any', () => {
    expect(decisions([{ deny: 'zip', on: 'name' }])[1][1]).toBe('deny 1 .zip');
    expect(decisions([{ deny: '^application/zip$', on: 'declaredType' }])[1][1]).toBe('deny 1 declared type');
    expect(decisions([{ deny: '^application/zip$', on: 'name' }])[1][1]).toBeNull();
    expect(decisions([{ deny: '^\\.exe-ms$' }])[1][1]).toBe('deny 1 .exe-ms');
  });

  it('see UNDECIPHERABLE on a part that could not be read', () => {
    const root = newNode('1', ['x.zip'], []);
    root.limit = 'ratio';
    const [d] = decideLeaves(compileRules([{ deny: '^UNDECIPHERABLE$', on: 'type' }]), root, { tests: 0 });
    expect(d.match && kindOf(d.match)).toBe('undecipherable part');
  });

  it('refuse a bad pattern and a rule with both or neither of deny and allow', () => {
    expect(() => compileRules([{ deny: '(' }])).toThrow(/rule 1/);
    expect(() => compileRules([{ deny: 'a', allow: 'b' }])).toThrow(/exactly one/);
    expect(() => compileRules([{}])).toThrow(/exactly one/);
  });
});

describe('file names', () => {
  it('lose trailing dots and spaces, bidi controls and invisible characters', () => {
    expect(normalizeName('file.exe. . ')).toBe('file.exe');
    expect(normalizeName('invoice\u202Efdp.exe')).toBe('invoicefdp.exe');
    expect(normalizeName('report.e\u200Bxe')).toBe('report.exe');
  });

  it('are disguised when they hold bidi or invisible characters', () => {
    expect(isDisguised('invoice\u202Efdp.exe')).toBe(true);
    expect(isDisguised('a\u2066b')).toBe(true);
    expect(isDisguised('Rechnung März.pdf')).toBe(false);
  });

  it('give a plain extension for a reply, or none', () => {
    expect(extensionOf('INVOICE.PDF.EXE')).toBe('.exe');
    expect(extensionOf('weird.e<x>e')).toBeNull();
  });

  it('are written to the log with control and bidi characters escaped', () => {
    expect(forLog('a\u202Eb\r\nc')).toBe('a\\u{202e}b\\u{d}\\u{a}c');
  });
});
