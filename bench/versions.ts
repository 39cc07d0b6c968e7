/** What the results were measured on and with, for the results file. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './postseal';

export function describeMachine(): Record<string, unknown> {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    kernel: `${os.type()} ${os.release()}`,
    loadAvgAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

export function describeVersions(): Record<string, string | null> {
  const pkg = (name: string) => {
    try {
      return (JSON.parse(readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
    } catch {
      return null;
    }
  };
  const own = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
  return {
    postseal: own.version,
    commit: run('git', ['-C', ROOT, 'describe', '--always', '--dirty']),
    node: process.version,
    openssl: process.versions.openssl,
    smtpServer: pkg('smtp-server'),
    postfix: run('postconf', ['-h', 'mail_version']) ?? debianVersion('postfix'),
    amavisdNew: debianVersion('amavisd-new'),
  };
}

export function debianVersion(name: string): string | null {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: ${Version} is dpkg-query's own format field, not a template.
  const v = run('dpkg-query', ['-W', '-f', '${Version}', name]);
  return v || null;
}

function run(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}
