/**
 * Listening ports for one e2e environment. Not port 0: the kernel hands those out from the
 * ephemeral range, where any outgoing connection (Postfix to postseal, postseal to Postfix,
 * other suites) may take one as its source port in the seconds between picking a port and
 * Postfix or postseal binding it. So ports come from below that range, from a slice of their
 * own per jest worker, so two e2e files running in parallel never pick the same block.
 */
import { readFileSync } from 'node:fs';
import net from 'node:net';

const LOWEST = 20000;
const SLICES = 8;

export async function pickPorts(count: number): Promise<number[]> {
  const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32768;
  const sliceSize = Math.floor((ephemeralLow - LOWEST) / SLICES);
  const worker = (Number(process.env.JEST_WORKER_ID) || 1) - 1;
  const sliceStart = LOWEST + (worker % SLICES) * sliceSize;
  const blocks = Math.floor(sliceSize / count);
  for (let attempt = 0; attempt < 20; attempt++) {
    const start = sliceStart + Math.floor(Math.random() * blocks) * count;
    const ports = Array.from({ length: count }, (_, i) => start + i);
    if (await allFree(ports)) return ports;
  }
  throw new Error(`no block of ${count} free ports between ${sliceStart} and ${sliceStart + sliceSize}`);
}

/** Binds every port at once (so none is counted twice), then lets them go again. */
async function allFree(ports: number[]): Promise<boolean> {
  const bound = await Promise.all(
    ports.map(
      (p) =>
        new Promise<net.Server | null>((resolve) => {
          const s = net.createServer();
          s.once('error', () => resolve(null));
          s.listen(p, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  await Promise.all(bound.map((s) => s && new Promise((r) => s.close(r))));
  return bound.every(Boolean);
}
