/**
 * stages/virus/probe.ts clamdWarnings: a clamd that does not answer is a warning that says
 * where to look: nothing at virus.socket (clamav-daemon not running, or another LocalSocket),
 * or a path that is not a socket.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { clamdWarnings } from '../../../src/stages/virus/probe';
import { loadTestBank } from '../../helpers/banks';

const dir = mkdtempSync(path.join(tmpdir(), 'postseal-clamd-probe-'));

async function warningFor(socket: string): Promise<string> {
  const bank = loadTestBank({ stages: ['virus'], virus: { socket } });
  const warnings = await clamdWarnings({ file: '/etc/postseal/postseal.yaml', banks: new Map([['default', bank]]) });
  expect(warnings.map((w) => w.code)).toEqual(['CFG_VIRUS_SCANNER_NOT_ANSWERING']);
  return warnings[0].message;
}

describe('the clamd start-up warning', () => {
  it('says to start clamav-daemon or set virus.socket when nothing is at the socket path', async () => {
    const missing = path.join(dir, 'clamd.ctl');
    expect(await warningFor(missing)).toMatch(
      new RegExp(`did not answer PING .*; /virus/socket: nothing is at ${missing}: start clamav-daemon .*or set virus\\.socket to the LocalSocket of clamd\\.conf`),
    );
  });

  it('says that a regular file at virus.socket is not a socket', async () => {
    const file = path.join(dir, 'not-a-socket');
    writeFileSync(file, '');
    expect(await warningFor(file)).toContain(`; /virus/socket: ${file} is not a socket: set virus.socket to the LocalSocket of clamd.conf`);
  });
});
