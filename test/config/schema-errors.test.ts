/**
 * config/schema-errors.ts and config/yaml-file.ts: the mistakes of a postmaster who brings
 * amavisd-new's settings over are refused with the file, the JSON pointer (or line) and the
 * value to write instead.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { configFolder, loadError } from '../helpers/config-folder';

const configWith = configFolder;

describe('configuration mistakes', () => {
  it('a store URL refused by its pattern is shown without its password', () => {
    const { file } = configWith('store: { backend: redis, redis: { url: "redis:/:sekret@127.0.0.1:6379/0" } }\n');
    const e = loadError(file);
    expect(e.message).toContain(`${file}: /store/redis/url: must match pattern "^rediss?://", not the text "redis:/:***@127.0.0.1:6379/0"`);
    expect(e.message).not.toContain('sekret');
  });

  it('a size written "10M" where bytes are wanted names the number of bytes to write', () => {
    const { file } = configWith('spool: { memoryThresholdBytes: 10M }\n');
    const e = loadError(file);
    expect(e.code).toBe('CFG_SCHEMA_INVALID');
    expect(e.message).toContain(`${file}: /spool/memoryThresholdBytes: must be integer, not the text "10M"; write the number of bytes: 10485760`);
  });

  it('a time written "30s" where milliseconds are wanted names the milliseconds', () => {
    const e = loadError(configWith('dns: { timeoutMs: 30s }\n').file);
    expect(e.message).toContain('/dns/timeoutMs: must be integer, not the text "30s"; write the number of milliseconds: 30000');
  });

  it('yes for a boolean says to write true or false (YAML 1.2 reads yes as text)', () => {
    const e = loadError(configWith('', 'notices: { warnBannedSender: yes }\n').file);
    expect(e.message).toMatch(/\/notices\/warnBannedSender: must be boolean, not the text "yes"; write true or false without quotes/);
  });

  it('a misspelt key names the key that was meant', () => {
    const e = loadError(configWith('', 'virus: { maxScanByte: 1000 }\n').file);
    expect(e.message).toMatch(/default\.yaml: \/virus: unknown key "maxScanByte"; did you mean "maxScanBytes"\?/);
  });

  it('a key in the wrong case names the key that was meant', () => {
    expect(loadError(configWith('', 'Virus: {}\n').file).message).toContain('unknown key "Virus"; did you mean "virus"?');
  });

  it('an amavisd.conf assignment pasted as a value says to write the value alone', () => {
    const e = loadError(configWith('', 'spam: { tagLevel: "$sa_tag_level_deflt = 2.0;" }\n').file);
    expect(e.message).toMatch(/\/spam\/tagLevel: must be number, .*amavisd\.conf \(Perl\) syntax: write the value alone/);
  });

  it('an amavisd.conf line in a bank file names the line and says it is Perl syntax', () => {
    const { dir, file } = configWith('', '$sa_tag_level_deflt = 2.0;\n');
    const e = loadError(file);
    expect(e.code).toBe('CFG_YAML_INVALID');
    expect(e.message).toMatch(new RegExp(`^${path.join(dir, 'banks', 'default.yaml')}:2:1: .*is amavisd\\.conf \\(Perl\\) syntax`));
  });

  it('a tab in the indentation says to indent with spaces, at its line and column', () => {
    const e = loadError(configWith('log:\n\tlevel: info\n').file);
    expect(e.code).toBe('CFG_YAML_INVALID');
    expect(e.message).toMatch(/postseal\.yaml:5:1: Tabs are not allowed as indentation; indent with spaces/);
  });

  it('a bank file that is a list is refused as one, not as an unknown key "0"', () => {
    const { dir, file } = configWith('', '', { ORIGINATING: '- originating: true\n' });
    const e = loadError(file);
    expect(e.code).toBe('CFG_SCHEMA_INVALID');
    expect(e.message).toBe(
      `${path.join(dir, 'banks', 'ORIGINATING.yaml')}: /: must be a mapping of keys (key: value lines), not a list (lines starting with "- "); write the keys at the start of their lines, without "- "`,
    );
  });

  it('a main file that is a list says a mapping is wanted', () => {
    const { file } = configWith('');
    writeFileSync(file, '- bankDir: banks\n');
    expect(loadError(file).message).toBe(`${file}: /: must be a mapping of keys (key: value lines), not a list (lines starting with "- ")`);
  });
});
