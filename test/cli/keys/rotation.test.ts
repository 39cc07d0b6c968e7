/**
 * A key rotation on a running postseal under load: two test clients keep sending signed
 * mail while a new selector is generated, staged (key table + signing table, SIGHUP),
 * published, activated with `postseal keys activate` and applied with SIGHUP. Every
 * message is accepted and reaches the sink exactly once, mail sent after the reload carries
 * the new selector, and mail signed with the retiring key still verifies.
 */
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import YAML from 'yaml';
import { startDaemon, type Daemon } from '../../helpers/cli';
import { startDnsServer } from '../../helpers/dns-server';
import { dkimpy } from '../../helpers/dkim-verifiers';
import { runCliAsync, writeKeyConfig, zoneFromRecords } from '../../helpers/key-config';
import { startSink } from '../../helpers/sink';
import { TestClient } from '../../helpers/smtp-client';

/** The load: enough messages on each side of the reload to see it, and a cap. */
const SENDERS = 2;
const AFTER_RELOAD = 10;
const MAX_MESSAGES = 200;

interface Sent {
  n: number;
  code?: number;
  /** The clients saw every postseal process log the activation reload before this message began. */
  afterReload: boolean;
  /** The message was accepted before `keys activate` ran. */
  beforeActivation: boolean;
}

/** SIGHUP, then wait until every serving process (one, or each cluster worker) has reloaded. */
async function reload(d: Daemon): Promise<void> {
  // The primary names its workers; a single process logs no count. (Workers' own lines can still be in their log buffers.)
  const servers = (d.lines.find((l) => l.msg === 'postseal started')?.workers as number | undefined) ?? 1;
  const before = d.lines.filter((l) => l.msg === 'configuration reloaded').length;
  d.proc.kill('SIGHUP');
  await d.waitFor(() => d.lines.filter((l) => l.msg === 'configuration reloaded').length >= before + servers);
}

it('rotates to a staged selector under load: every message accepted, none lost, the ones after the reload carry the new selector', async () => {
  const sink = await startSink();
  const dns = await startDnsServer();
  const keyDir = mkdtempSync(path.join(tmpdir(), 'postseal-rotate-'));
  const old = await runCliAsync(['keys', 'generate', '--domain', 'example.com', '--selector', 'old2025', '--out', keyDir]);
  Object.assign(dns.zone, zoneFromRecords(old.stdout));
  const cfg = writeKeyConfig({
    keys: { old: { domain: 'example.com', selector: 'old2025', keyFile: path.join(keyDir, 'example.com.old2025.pem'), algorithm: 'rsa-sha256' } },
    rules: [{ author: 'example.com', keys: ['old'] }],
    dnsServer: dns.server,
    forwardPort: sink.port,
  });
  writeFileSync(cfg.keyTableFile, `# example.com signing keys\n${readFileSync(cfg.keyTableFile, 'utf8')}`);
  const d = startDaemon(cfg.config);
  const sent: Sent[] = [];
  let load: Promise<unknown> = Promise.resolve();
  let afterReload = false;
  let activating = false;
  let stopped = false;
  try {
    await d.waitFor((l) => l.msg === 'postseal started');
    const port = (await d.waitFor((l) => l.msg === 'listening')).port as number;
    const done = () => stopped || sent.filter((s) => s.afterReload && s.code !== undefined).length >= AFTER_RELOAD || sent.length >= MAX_MESSAGES;
    const sender = async () => {
      while (!done()) {
        const s: Sent = { n: sent.length, afterReload, beforeActivation: false };
        sent.push(s);
        const c = await TestClient.connect(port);
        const r = await c.send({
          from: 'a@example.com',
          to: ['b@example.net'],
          data: `From: a@example.com\r\nTo: b@example.net\r\nSubject: load ${s.n}\r\n\r\nmessage ${s.n}\r\n`,
        });
        await c.quit();
        s.code = r.final?.code;
        s.beforeActivation = !activating;
      }
    };
    load = Promise.all(Array.from({ length: SENDERS }, sender));
    while (sent.filter((s) => s.code !== undefined).length < 4) await new Promise((r) => setTimeout(r, 20));

    // Stage: the key and its record exist, the rule names it; it does not sign yet.
    const gen = await runCliAsync(['keys', 'generate', '--domain', 'example.com', '--selector', 'new2026', '--out', keyDir]);
    expect(gen.status).toBe(0);
    appendFileSync(
      cfg.keyTableFile,
      YAML.stringify({ new: { domain: 'example.com', selector: 'new2026', keyFile: path.join(keyDir, 'example.com.new2026.pem'), algorithm: 'rsa-sha256', state: 'staged' } }),
    );
    writeFileSync(cfg.signingTableFile, YAML.stringify([{ author: 'example.com', keys: ['old', 'new'] }]));
    const show = await runCliAsync(['keys', 'show', 'example.com', '--config', cfg.config]);
    Object.assign(dns.zone, zoneFromRecords(show.stdout));
    expect(Object.keys(dns.zone).sort()).toEqual(['new2026._domainkey.example.com', 'old2025._domainkey.example.com']);
    await reload(d);

    activating = true;
    const activate = await runCliAsync(['keys', 'activate', '--domain', 'example.com', '--selector', 'new2026', '--config', cfg.config]);
    expect(activate.stderr).toBe('');
    expect(activate.stdout).toMatch(/^ok +new2026\._domainkey\.example\.com \(new, staged, rsa-sha256\): KEY_OK /);
    expect(activate.stdout).toContain('old (d=example.com s=old2025 rsa-sha256): active -> retiring');
    expect(activate.status).toBe(0);
    await reload(d);
    afterReload = true;
    await load;

    expect(sent.every((s) => s.code === 250)).toBe(true);
    expect(sink.received).toHaveLength(sent.length);
    const selectors = new Map<number, string[]>();
    for (const m of sink.received) {
      const text = m.data.toString('latin1');
      selectors.set(
        Number(/^Subject: load (\d+)\r$/m.exec(text)![1]),
        [...text.matchAll(/^DKIM-Signature:[\s\S]*?\bs=([\w-]+);/gm)].map((x) => x[1]),
      );
    }
    expect([...selectors.keys()].sort((a, b) => a - b)).toEqual(sent.map((s) => s.n));
    for (const s of sent) {
      if (s.afterReload) expect([s.n, selectors.get(s.n)]).toEqual([s.n, ['new2026']]);
      else if (s.beforeActivation) expect([s.n, selectors.get(s.n)]).toEqual([s.n, ['old2025']]);
      else expect([['old2025'], ['new2026']]).toContainEqual(selectors.get(s.n));
    }
    expect(sent.filter((s) => s.beforeActivation).length).toBeGreaterThan(0);
    expect(readFileSync(cfg.keyTableFile, 'utf8')).toMatch(/^# example\.com signing keys\n/);

    // The retiring key's record stays published: mail it signed still verifies, as does the new key's.
    const first = sink.received[0].data;
    const last = sink.received[sink.received.length - 1].data;
    expect((await dkimpy(first, dns.server)).map((r) => [r.selector, r.result])).toEqual([['old2025', 'pass']]);
    expect((await dkimpy(last, dns.server)).map((r) => [r.selector, r.result])).toEqual([['new2026', 'pass']]);
  } finally {
    stopped = true;
    // A failed assertion above leaves the senders running: let them finish their message.
    await load.catch(() => undefined);
    d.proc.kill('SIGTERM');
    await d.exited;
    await sink.close();
    await dns.close();
  }
}, 60000);
