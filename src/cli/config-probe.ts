/**
 * `config check --probe`: connects to every bank's forward target (the Postfix reinjection
 * smtpd, or an LMTP server) and warns (CFG_FORWARD_NOT_ANSWERING) when it does not greet with
 * 220 within the timeout: the usual cause is a master.cf without the reinjection service, or
 * ports that disagree (docs/ports.md). Reads at most 4 KiB of the greeting, then QUIT.
 * A probe is a warning, never an error: Postfix may be started after postseal.
 */
import net from 'node:net';
import type { ConfigWarning } from '../errors';
import type { LoadedConfig } from '../setup';

const MAX_GREETING_BYTES = 4096;

export async function probeForwardTargets(config: LoadedConfig, timeoutMs = 3000): Promise<ConfigWarning[]> {
  const targets = new Map<string, string[]>();
  for (const [name, bank] of config.banks) {
    const key = `${bank.forward.host}:${bank.forward.port}`;
    targets.set(key, [...(targets.get(key) ?? []), name]);
  }
  const results = await Promise.all(
    [...targets].map(async ([key, banks]) => {
      const [host, port] = [key.slice(0, key.lastIndexOf(':')), Number(key.slice(key.lastIndexOf(':') + 1))];
      const problem = await greeting(host, port, timeoutMs);
      return problem
        ? {
            code: 'CFG_FORWARD_NOT_ANSWERING' as const,
            message: `forward target ${key} of bank${banks.length > 1 ? 's' : ''} ${banks.join(', ')}: ${problem}; mail would be deferred (451). Check the reinjection smtpd in master.cf and docs/ports.md`,
          }
        : null;
    }),
  );
  return results.filter((w) => w !== null);
}

/** null when the target greets with 220, else what happened instead. */
function greeting(host: string, port: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let got = '';
    const done = (problem: string | null) => {
      clearTimeout(timer);
      if (problem === null) socket.end('QUIT\r\n');
      else socket.destroy();
      resolve(problem);
    };
    const timer = setTimeout(() => done(got ? `no complete greeting within ${timeoutMs} ms` : `no answer within ${timeoutMs} ms`), timeoutMs);
    socket.on('error', (err) => done(`${(err as NodeJS.ErrnoException).code ?? err.message}`));
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const nl = got.indexOf('\n');
      if (nl >= 0) {
        const line = got.slice(0, nl).replace(/\r$/, '');
        return done(/^220[ -]/.test(line) ? null : `greeted with "${line.slice(0, 200)}", not 220`);
      }
      if (got.length > MAX_GREETING_BYTES) done('greeting longer than 4 KiB without a line end');
    });
  });
}
