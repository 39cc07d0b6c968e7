/**
 * The banned stage's unar work file on a disk that is full (decoders' folder, spool.dir, on a
 * small tmpfs, test/helpers/tmpfs.ts): the stage fails (the runner's STAGE_FAILED, 451 4.3.0,
 * Postfix retries), never a finding that would pass the archive unchecked or reject the mail
 * as damaged; once space returns the same message is checked and leaves no file behind.
 */
import { readdirSync } from 'node:fs';
import { EXTERNAL_FORMATS, ExternalUnpacker, ProcessSlots } from '../../../src/lib/archive/external';
import type { StageDeps } from '../../../src/pipeline/stage';
import { bannedStage } from '../../../src/stages/banned';
import { file, makeRar, messageWith } from '../../helpers/archives';
import { loadTestBank } from '../../helpers/banks';
import { stageFor, testStageDeps, testTransaction } from '../../helpers/stage-run';
import { mountSmallDisk, type SmallDisk } from '../../helpers/tmpfs';

let disk: SmallDisk;
let deps: StageDeps;
beforeAll(() => {
  disk = mountSmallDisk(256 * 1024);
  const settings = { lsar: '/usr/bin/lsar', unar: '/usr/bin/unar', formats: [...EXTERNAL_FORMATS], timeoutMs: 20000, maxProcesses: 2, tmpDir: disk.dir };
  deps = { ...testStageDeps({ server: '127.0.0.1:9' }), unpacker: new ExternalUnpacker(settings, new ProcessSlots()) };
});
afterEach(() => disk?.free());
afterAll(() => disk?.unmount());

it('a RAR that cannot be written for unar fails the stage; with space back its banned member is found', async () => {
  const rar = makeRar([{ name: 'invoice.pdf.exe', data: 'x'.repeat(8192) }]);
  const bank = loadTestBank({ stages: ['banned'] });
  const run = () =>
    stageFor(bannedStage, bank, deps).run(testTransaction(messageWith([file('documents.rar', rar, 'application/vnd.rar')]), { bank }), new AbortController().signal);
  await disk.fill();
  await expect(run()).rejects.toMatchObject({ code: 'ENOSPC' });
  expect(readdirSync(disk.dir).filter((n) => n !== '.filler')).toEqual([]);
  await disk.free();
  expect((await run()).findings.map((f) => f.code)).toEqual(['BANNED_FILE']);
  expect(readdirSync(disk.dir)).toEqual([]);
});
