import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import pino from 'pino';
import type { KeyStore, SigningKey } from '../../src/keys/key-store';
import type { StageDeps } from '../../src/pipeline/stage';
import { decide } from '../../src/pipeline/verdict';
import { dkimSignStage } from '../../src/stages/dkim-sign';
import { loadTestBank } from '../helpers/banks';
import { rsaKey } from '../helpers/dkim-verifiers';
import { rulesOf, stageFor, testTransaction } from '../helpers/stage-run';

describe('dkim-sign stage failures', () => {
  const privateKey = createPrivateKey(readFileSync(rsaKey.file));
  const storeWith = (key: Partial<SigningKey>): KeyStore => {
    const k: SigningKey = {
      name: 'k',
      domain: 'example.com',
      selector: 's',
      algorithm: 'rsa-sha256',
      privateKey,
      domainKeys: 'off',
      state: 'active',
      keyFile: rsaKey.file,
      ...key,
    };
    const rule = { index: 0, author: 'example.com', keys: [k], signing: [k] };
    return { size: 1, files: null, keys: [k], rules: [rule], ruleFor: () => rule, forAuthor: () => [k] };
  };
  const deps = (keys: KeyStore) => ({ hostname: 'h', authservId: 'h', bankName: 'default', log: pino({ level: 'silent' }), keys }) as Partial<StageDeps> as StageDeps;
  const bank = loadTestBank({ originating: true, stages: ['dkim-sign'] });

  it('turns a signing error into DKIM_SIGN_FAILED, a 451 4.7.5 tempfail, never unsigned mail', async () => {
    const stage = stageFor(dkimSignStage, bank, deps(storeWith({ privateKey: createPublicKey(privateKey) })));
    const outcome = await stage.run(testTransaction('From: a@example.com\r\n\r\nbody\r\n', { bank }), new AbortController().signal);
    expect(outcome.message).toBeUndefined();
    expect(outcome.findings.map((f) => f.code)).toEqual(['DKIM_SIGN_FAILED']);
    const v = decide(outcome.findings, rulesOf(bank));
    expect([v.action, v.reply.code, v.reply.enhanced]).toEqual(['tempfail', '451', '4.7.5']);
  });

  it('stops with the abort reason when the message deadline passes', async () => {
    const stage = stageFor(dkimSignStage, bank, deps(storeWith({})));
    const ac = new AbortController();
    ac.abort(new Error('deadline'));
    await expect(stage.run(testTransaction('From: a@example.com\r\n\r\nbody\r\n', { bank }), ac.signal)).rejects.toThrow('deadline');
  });
});
