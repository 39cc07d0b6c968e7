/**
 * The Dockerfile, read as text: no Docker daemon runs in this container or CI (`docker info`
 * cannot connect), so the image is not built here. What is checked: it runs as its own
 * user, and the config it ships puts the spool and the store on its volumes, owned by that
 * user; and that config is valid (checked with its state paths moved to a temp folder).
 */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { root, runCli } from '../helpers/cli';

const dockerfile = readFileSync(path.join(root, 'Dockerfile'), 'utf8');
const configText = readFileSync(path.join(root, 'examples/docker/postseal.yaml'), 'utf8');
const config = YAML.parse(configText);
const volumes: string[] = JSON.parse(/^VOLUME (.*)$/m.exec(dockerfile)![1]);

describe('Dockerfile', () => {
  it('runs as the postseal user, not root and not the image’s node user', () => {
    expect(dockerfile).toMatch(/^USER postseal$/m);
    expect(dockerfile).toContain('useradd --system --gid postseal');
  });

  it('ships examples/docker/postseal.yaml as /etc/postseal/postseal.yaml, the file it starts with', () => {
    expect(dockerfile).toContain('COPY examples/docker/postseal.yaml /etc/postseal/postseal.yaml');
    expect(dockerfile).toContain('CMD ["start", "--config", "/etc/postseal/postseal.yaml"]');
  });

  it('puts spool.dir and the sqlite store on volumes that the postseal user owns', () => {
    expect(volumes).toContain(config.spool.dir);
    expect(volumes).toContain(path.dirname(config.store.sqlite.file));
    const chown = /chown -R postseal:postseal (.*?) \\/.exec(dockerfile)![1].split(' ');
    expect(chown).toEqual(expect.arrayContaining([config.spool.dir, path.dirname(config.store.sqlite.file)]));
  });

  it('its config is valid', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'postseal-docker-conf-'));
    mkdirSync(path.join(dir, 'state')); // made by the Dockerfile's RUN
    cpSync(path.join(root, 'policy-banks'), path.join(dir, 'policy-banks'), { recursive: true });
    writeFileSync(path.join(dir, 'postseal.yaml'), configText.replaceAll('/var/spool/postseal', `${dir}/spool`).replaceAll('/var/lib/postseal', dir));
    const r = runCli(['config', 'check', '--config', path.join(dir, 'postseal.yaml')]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
