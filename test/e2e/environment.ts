/**
 * One e2e environment per test file: a private Postfix rendered from examples/postfix and the
 * postseal daemon between its filter ports, on free loopback ports, with a loopback DNS
 * server whose empty zone answers NXDOMAIN (so remote.test has no SPF, DKIM or DMARC).
 * close() stops all of it and removes every file; call it in afterAll, which jest runs even
 * when a test or start-up failed.
 */
import path from 'node:path';
import { startDnsServer, type Zone } from '../helpers/dns-server';
import { EXAMPLE_PORTS, Postfix, type PortMap } from './postfix';
import { PostsealDaemon, buildPostseal, writePostsealConfig } from './postseal-daemon';
import { pickPorts } from './ports';

export interface E2E {
  readonly ports: PortMap;
  readonly postfix: Postfix;
  /** The postseal process started last. */
  readonly postseal: PostsealDaemon;
  /** Where postseal spools message data (a file per message from its first byte). */
  readonly spoolDir: string;
  /** Starts a new postseal on the same config and ports, e.g. after a SIGKILL. */
  restartPostseal(): Promise<PostsealDaemon>;
  /** Every postseal run's log and Postfix's maillog, for failure messages. */
  explain(): string;
  close(): Promise<void>;
}

/**
 * `zone`: what the loopback DNS server answers (DKIM keys, SPF, DMARC of test domains).
 * `postsealConfig`: main-config keys on top of the shipped postseal.yaml (or a function of the
 * port map, for settings that name a remapped example port).
 */
/**
 * `banks`: bank files added or laid over the shipped ones (postseal-daemon.ts).
 * `beforePostseal`: changes to the running Postfix made before postseal starts.
 */
export async function startE2E(
  zone: Zone = {},
  postsealConfig: Record<string, unknown> | ((ports: PortMap) => Record<string, unknown>) = {},
  opts: { banks?: Record<string, Record<string, unknown>>; beforePostseal?: (postfix: Postfix, ports: PortMap) => Promise<void> } = {},
): Promise<E2E> {
  const free = await pickPorts(EXAMPLE_PORTS.length);
  const ports = Object.fromEntries(EXAMPLE_PORTS.map((p, i) => [p, free[i]])) as unknown as PortMap;
  const dns = await startDnsServer(zone);
  const postfix = await Postfix.start(ports).catch(async (err) => {
    await dns.close();
    throw err;
  });
  const daemons: PostsealDaemon[] = [];
  const close = async () => {
    await Promise.all(daemons.map((d) => d.stop()));
    await postfix.destroy();
    await dns.close();
  };
  try {
    const cli = await buildPostseal(path.join(postfix.dir, 'dist'));
    await opts.beforePostseal?.(postfix, ports);
    const { configFile, spoolDir } = writePostsealConfig(
      path.join(postfix.dir, 'postseal'),
      ports,
      dns.server,
      typeof postsealConfig === 'function' ? postsealConfig(ports) : postsealConfig,
      opts.banks,
    );
    const restartPostseal = async () => {
      daemons.push(await PostsealDaemon.start(cli, configFile, path.join(postfix.dir, 'postseal.pid')));
      return daemons[daemons.length - 1];
    };
    await restartPostseal();
    return {
      ports,
      postfix,
      get postseal() {
        return daemons[daemons.length - 1];
      },
      spoolDir,
      restartPostseal,
      explain: () => `${daemons.map((d) => d.explain()).join('\n')}\n${postfix.maillogTail(60)}`,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
