/**
 * `postseal keys generate` (amavisd genrsa, opendkim-genkey): a new private key (PEM, mode
 * 0600, never overwritten without --force) and the DNS record to publish, in zone-file form.
 * --owner USER[:GROUP] gives the file to postseal's service user: written to a temporary
 * file, chowned, then put in place in one step, so the key is never readable by anyone else
 * and a half-written key never has the final name.
 */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, existsSync, fchownSync, linkSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import path from 'node:path';
import { keyRecordText, zoneRecord } from '../../lib/dkim-key-record';
import { parse, UsageError } from '../args';

export const usage = 'keys generate --domain D --selector S [--type rsa|ed25519] [--bits N] [--out DIR] [--owner USER] [--testing] [--force]';

export const help = `Usage: postseal keys generate --domain D --selector S [--type rsa|ed25519] [--bits N]
                              [--out DIR] [--owner USER[:GROUP]] [--testing] [--force]

Writes DIR/D.S.pem (PKCS#8, mode 0600) and prints the TXT record for S._domainkey.D in
zone-file form. --type rsa (default, --bits 1024..4096, default 2048) or ed25519.
--testing adds t=y (verifiers treat failures leniently). An existing file is kept unless
--force is given. --owner makes USER (and GROUP, default USER's group) the file's owner, so
a postseal running as USER can read it (needs root). Add the key to the key table with state: staged, publish the record,
then postseal keys test and postseal keys activate.`;

export async function run(args: string[]): Promise<number> {
  const { values, help: h } = parse(
    args,
    {
      domain: { type: 'string' },
      selector: { type: 'string' },
      type: { type: 'string', default: 'rsa' },
      bits: { type: 'string', default: '2048' },
      out: { type: 'string', default: '.' },
      testing: { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
      owner: { type: 'string' },
    },
    help,
  );
  if (h) {
    process.stdout.write(`${h}\n`);
    return 0;
  }
  const { domain, selector } = values;
  if (!domain || !/^[a-z0-9.-]+$/i.test(domain)) throw new UsageError(`--domain needs a domain name\n\n${help}`);
  if (!selector || !/^[a-z0-9-]+(\.[a-z0-9-]+)*$/i.test(selector)) throw new UsageError(`--selector needs a selector (letters, digits, dashes, dots)\n\n${help}`);
  const bits = Number(values.bits);
  if (values.type !== 'rsa' && values.type !== 'ed25519') throw new UsageError(`--type is rsa or ed25519\n\n${help}`);
  if (values.type === 'rsa' && !(Number.isInteger(bits) && bits >= 1024 && bits <= 4096))
    throw new UsageError(`--bits is 1024..4096 (RFC 8301: at least 1024; 2048 recommended)\n\n${help}`);
  const file = path.resolve(values.out!, `${domain}.${selector}.pem`);
  if (existsSync(file) && !values.force) {
    process.stderr.write(`postseal: ${file} exists; keeping it (use --force to replace it)\n`);
    return 1;
  }
  const owner = values.owner === undefined ? undefined : lookupOwner(values.owner);
  if (owner === null) return 1;
  const { privateKey } = values.type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: bits }) : generateKeyPairSync('ed25519');
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    // Written and chowned through its descriptor: a name swapped for a symlink meanwhile is not followed.
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeSync(fd, String(privateKey.export({ format: 'pem', type: 'pkcs8' })));
      if (owner) fchownSync(fd, owner.uid, owner.gid);
    } finally {
      closeSync(fd);
    }
    if (values.force) renameSync(tmp, file);
    else {
      // link fails if the name exists meanwhile: never overwrite without --force.
      linkSync(tmp, file);
      unlinkSync(tmp);
    }
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // Never written.
    }
    process.stderr.write(`postseal: cannot write ${file}: ${(err as Error).message}\n`);
    return 1;
  }
  process.stderr.write(`postseal: wrote ${file}${owner ? ` (owner ${values.owner}, uid ${owner.uid} gid ${owner.gid}, mode 0600)` : ''}\n`);
  process.stdout.write(`${zoneRecord(domain.toLowerCase(), selector, keyRecordText(privateKey, { testing: values.testing }))}\n`);
  return 0;
}

/** USER[:GROUP] as uid and gid, through `id` (Node has no getpwnam); null after saying why. */
function lookupOwner(spec: string): { uid: number; gid: number } | null {
  const [user, group] = spec.split(':', 2);
  const id = (args: string[]) => Number(execFileSync('id', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  let uid: number;
  let gid: number;
  try {
    uid = id(['-u', '--', user]);
    gid = group ? groupId(group) : id(['-g', '--', user]);
  } catch {
    process.stderr.write(`postseal: --owner ${spec}: no such user${group ? ' or group' : ''} (create it first, e.g. adduser --system --group ${user})\n`);
    return null;
  }
  return { uid, gid };
}

function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  const line = execFileSync('getent', ['group', '--', group], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return Number(line.split(':')[2]);
}
