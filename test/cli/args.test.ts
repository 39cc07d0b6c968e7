import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { configErrorFields, configFile, systemConfigFile } from '../../src/cli/args';
import { builtinConfigFile } from '../../src/config/load';
import { readYaml } from '../../src/config/yaml-file';
import { runCli } from '../helpers/cli';

const dir = mkdtempSync(path.join(tmpdir(), 'postseal-args-'));
const present = path.join(dir, 'etc-postseal.yaml');
writeFileSync(present, 'bankDir: x\n');
const absent = path.join(dir, 'missing.yaml');

describe('which configuration file a command reads', () => {
  it('the default is /etc/postseal/postseal.yaml', () => {
    expect(systemConfigFile).toBe('/etc/postseal/postseal.yaml');
  });

  it('--config wins over POSTSEAL_CONFIG and the system file', () => {
    expect(configFile('/a.yaml', { POSTSEAL_CONFIG: '/b.yaml' }, present)).toEqual({ file: '/a.yaml' });
  });

  it('POSTSEAL_CONFIG wins over the system file', () => {
    expect(configFile(undefined, { POSTSEAL_CONFIG: '/b.yaml' }, present)).toEqual({ file: '/b.yaml' });
  });

  it('the system file is read when it exists and nothing else is given', () => {
    expect(configFile(undefined, {}, present)).toEqual({ file: present });
  });

  it('an empty POSTSEAL_CONFIG counts as unset', () => {
    expect(configFile(undefined, { POSTSEAL_CONFIG: '' }, present)).toEqual({ file: present });
  });

  it('without the system file the embedded example runs, with a notice naming both ways to choose', () => {
    const choice = configFile(undefined, {}, absent);
    expect(choice.file).toBe(builtinConfigFile);
    expect(choice.notice).toContain(`${absent} does not exist`);
    expect(choice.notice).toContain('--config FILE');
    expect(choice.notice).toContain('POSTSEAL_CONFIG=FILE');
  });

  it('the command reads POSTSEAL_CONFIG: config check explains that file', () => {
    const bad = path.join(dir, 'bad.yaml');
    writeFileSync(bad, 'listeners: nope\n');
    const r = runCli(['config', 'check'], undefined, { POSTSEAL_CONFIG: bad });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(bad);
    expect(r.stderr).not.toContain('embedded example');
  });
});

describe('the fields of a refused reload', () => {
  it('take the file and line from a YAML error as the loader writes it (file:line:column)', () => {
    const yaml = path.join(dir, 'tabs.yaml');
    writeFileSync(yaml, 'log:\n\tlevel: info\n');
    let err: unknown;
    try {
      readYaml(yaml);
    } catch (e) {
      err = e;
    }
    expect(configErrorFields(err as { code: string; message: string })).toMatchObject({ code: 'CFG_YAML_INVALID', file: yaml, line: 2 });
  });
});
