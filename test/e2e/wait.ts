/**
 * Bounded polling for the e2e suite: Postfix and postseal work asynchronously (queue manager,
 * reloads, retries), so a test waits for an observable state, never for a fixed time.
 */
import net from 'node:net';

const POLL_MS = 100;

/**
 * Calls `probe` until it returns something other than undefined/false, and returns that.
 * On timeout the error names what was awaited and, if given, the state that explains why.
 */
export async function waitFor<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  opts: { timeoutMs?: number; explain?: () => string } = {},
): Promise<T> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20000);
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${opts.explain ? `\n${opts.explain()}` : ''}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:port right now. */
export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
