import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/setup';
import { isPostsealError } from '../../src/errors';
import { rsaKey, writeSigningFiles } from '../helpers/dkim-verifiers';
import { startHarness } from '../helpers/postseal';
import { startSink } from '../helpers/sink';
import { TestClient } from '../helpers/smtp-client';

const msg = 'From: a@example.com\r\nSubject: reload\r\n\r\nbody\r\n';

it('keeps signing with the loaded key after its file is removed, and a reload that cannot read it is refused', async () => {
  const keyFile = path.join(mkdtempSync(path.join(tmpdir(), 'postseal-key-')), 'key.pem');
  copyFileSync(rsaKey.file, keyFile);
  const sink = await startSink();
  const h = await startHarness({
    forwardPort: sink.port,
    banks: { default: { originating: true, stages: ['dkim-sign'] } },
    main: { dkimSign: writeSigningFiles([{ ...rsaKey, file: keyFile }], [{ author: 'example.com', keys: ['example-rsa'] }]) },
  });
  const send = async () => {
    const c = await TestClient.connect(h.app.portOf('default'));
    const r = await c.send({ from: 'a@example.com', to: ['b@example.net'], data: msg });
    await c.quit();
    return { code: r.final?.code, signed: sink.received[sink.received.length - 1].data.toString().startsWith('DKIM-Signature: ') };
  };
  try {
    expect(await send()).toEqual({ code: 250, signed: true });
    rmSync(keyFile);
    let error: unknown;
    try {
      await h.app.reload(loadConfig(path.join(h.dir, 'postseal.yaml')));
    } catch (err) {
      error = err;
    }
    expect(isPostsealError(error, 'CFG_KEY_UNREADABLE')).toBe(true);
    expect(await send()).toEqual({ code: 250, signed: true });
  } finally {
    await h.close();
    await sink.close();
  }
});
