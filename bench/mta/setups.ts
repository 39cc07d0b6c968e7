/**
 * The whole-MTA benchmark's set-ups (issue 18): what runs beside Postfix, and which main.cf
 * settings put it in the mail's path. The content filters use examples/postfix as shipped
 * (the dual path: smtpd → queue → amavisfeed → filter :10026 ORIGINATING → reinjection smtpd
 * :10027 → queue → smtp-sink); Postfix alone and the milters run the same files with the
 * filter settings emptied and `smtpd_milters` set. A set-up that cannot run here says why
 * (`unavailable`) and is skipped; the run goes on with the others.
 */
import path from 'node:path';
import { amavisdUnavailable, startAmavisd } from '../amavisd';
import type { BenchKeys } from '../messages';
import { ROOT, startPostseal } from '../postseal';
import { rspamdUnavailable, opendkimUnavailable, startOpendkim, startRspamd } from './milters';

export type SetupName = 'postfix' | 'rspamd-milter' | 'opendkim-milter' | 'amavisd' | 'postseal-filter' | 'postseal-milter';

export interface SetupContext {
  dir: string;
  keys: BenchKeys;
  dnsPort: number;
  /** Where a content filter reinjects ORIGINATING mail (the example's 10027, remapped). */
  reinjectPort: number;
  /** Worker processes for postseal and rspamd (one per core by default). */
  processes: number;
  amavisdMaxServers: number;
  /** Extra node options for postseal (--profile: --cpu-prof), by set-up. */
  nodeArgs?(setup: SetupName): string[];
}

export interface RunningFilter {
  /** The filter's root process (its CPU figure is this process tree's). */
  readonly pid: number;
  /** The content filter's ORIGINATING listener (example 10026), or the milter's port. */
  readonly port: number;
  /** postseal's log (one line per message). */
  readonly logFile?: string;
  stop(): Promise<void>;
}

export interface Setup {
  readonly name: SetupName;
  readonly label: string;
  readonly signs: boolean;
  /** How Postfix hands it mail: a content filter's port takes the example's 10026. */
  readonly kind: 'none' | 'milter' | 'content-filter';
  /** Why this set-up cannot run here, or null. */
  unavailable(): string | null;
  /** Starts the filter (none for Postfix alone). */
  start(ctx: SetupContext): Promise<RunningFilter | null>;
  /** Settings laid over examples/postfix, given the filter's port. */
  postfix(filterPort: number | null, ctx: SetupContext): PostfixSettings;
}

export interface PostfixSettings {
  /** main.cf parameters. */
  main: Record<string, string>;
  /** master.cf fields, as `postconf -F` takes them (service/type/field=value). */
  master?: string[];
}

/** The examples' content-filter layout unchanged: the FILTER tags route our mail to 10026. */
const asShipped = (): PostfixSettings => ({ main: {} });
/** No content filter: no FILTER tags, no content_filter, address mappings on smtpd. */
const noFilter = { content_filter: '', smtpd_sender_restrictions: '', receive_override_options: '' };
/** A milter on smtpd; a milter that fails makes smtpd answer 451, never pass mail unsigned. */
const milter = (port: number | null): PostfixSettings => ({ main: { ...noFilter, smtpd_milters: `inet:127.0.0.1:${port}`, milter_default_action: 'tempfail' } });

export const SETUPS: readonly Setup[] = [
  { name: 'postfix', label: 'Postfix alone', signs: false, kind: 'none', unavailable: () => null, start: async () => null, postfix: () => ({ main: noFilter }) },
  {
    name: 'rspamd-milter',
    label: 'Postfix + rspamd milter (signing only)',
    signs: true,
    kind: 'milter',
    unavailable: rspamdUnavailable,
    start: (ctx) => startRspamd({ dir: ctx.dir, keys: ctx.keys, dnsPort: ctx.dnsPort, processes: ctx.processes }),
    postfix: milter,
  },
  {
    name: 'opendkim-milter',
    label: 'Postfix + OpenDKIM milter',
    signs: true,
    kind: 'milter',
    unavailable: opendkimUnavailable,
    start: (ctx) => startOpendkim({ dir: ctx.dir, keys: ctx.keys, dnsPort: ctx.dnsPort, processes: ctx.processes }),
    postfix: milter,
  },
  {
    name: 'amavisd',
    label: 'Postfix + amavisd-new content_filter',
    signs: true,
    kind: 'content-filter',
    unavailable: amavisdUnavailable,
    start: async (ctx) => {
      const am = await startAmavisd({ dir: ctx.dir, maxServers: ctx.amavisdMaxServers, keys: ctx.keys, sinkPort: ctx.reinjectPort, dnsPort: ctx.dnsPort });
      return { pid: am.pid, port: am.ports.originating, stop: () => am.stop() };
    },
    // amavisd-new serves one connection per child: Postfix must not open more than
    // $max_servers (README.postfix), or its cached idle connections hold every child while
    // the other deliveries wait in the listen queue until the cache lets go (30 s).
    postfix: (_port, ctx) => ({
      main: { amavisfeed_destination_concurrency_limit: String(ctx.amavisdMaxServers) },
      master: [`amavisfeed/unix/process_limit=${ctx.amavisdMaxServers}`],
    }),
  },
  {
    name: 'postseal-filter',
    label: 'Postfix + postseal content_filter (dual path)',
    signs: true,
    kind: 'content-filter',
    unavailable: () => null,
    start: async (ctx) => {
      const ps = await startPostseal({
        dir: path.join(ctx.dir, 'postseal-filter'),
        nodeArgs: ctx.nodeArgs?.('postseal-filter'),
        keys: ctx.keys,
        sinkPort: ctx.reinjectPort,
        dnsPort: ctx.dnsPort,
        workers: ctx.processes,
        paths: ['originating'],
      });
      return { pid: ps.pid, port: ps.ports.originating, logFile: ps.logFile, stop: () => ps.stop() };
    },
    postfix: asShipped,
  },
  {
    name: 'postseal-milter',
    label: 'Postfix + postseal milter',
    signs: true,
    kind: 'milter',
    unavailable: postsealMilterUnavailable,
    // HOOK (issue 18, item 1): assumes the milter lands as a listener protocol, i.e.
    // `listeners: [{ port, bank: ORIGINATING, protocol: milter }]`, the listener picking the
    // bank as it does for SMTP. If it lands in another shape, postsealMilterUnavailable()
    // says so and this start() is the one place to change.
    start: async (ctx) => {
      const ps = await startPostseal({
        dir: path.join(ctx.dir, 'postseal-milter'),
        nodeArgs: ctx.nodeArgs?.('postseal-milter'),
        keys: ctx.keys,
        sinkPort: ctx.reinjectPort,
        dnsPort: ctx.dnsPort,
        workers: ctx.processes,
        paths: ['originating'],
        listenerProtocol: 'milter',
      });
      return { pid: ps.pid, port: ps.ports.originating, logFile: ps.logFile, stop: () => ps.stop() };
    },
    postfix: milter,
  },
];

/**
 * Whether the built postseal (dist/config/main-schema.js) has a milter listener: the
 * set-up lights up once `listeners[].protocol` accepts "milter". A schema that mentions a
 * milter elsewhere is reported too, so a differently shaped milter is not silently skipped.
 */
export function postsealMilterUnavailable(): string | null {
  let schema: SchemaNode;
  try {
    schema = (require(path.join(ROOT, 'dist/config/main-schema.js')) as { mainConfigSchema: SchemaNode }).mainConfigSchema;
  } catch (err) {
    return `postseal is not built (npm run build): ${(err as Error).message}`;
  }
  const protocol = schema.properties?.listeners?.items?.properties?.protocol;
  if (protocol?.enum?.includes('milter')) return null;
  if (namesOf(schema).some((n) => /milter/i.test(n))) {
    return 'postseal has no milter listener in this build as bench/mta/setups.ts expects it (listeners[].protocol: milter), though its config schema names a milter: update the hook there';
  }
  return 'postseal has no milter listener in this build (dist/config/main-schema.js: listeners[].protocol has no "milter")';
}

interface SchemaNode {
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  enum?: readonly unknown[];
}

/** Every property name and enum value in a schema (not its descriptions, which may mention milters). */
function namesOf(node: SchemaNode | undefined): string[] {
  if (!node || typeof node !== 'object') return [];
  const own = [...Object.keys(node.properties ?? {}), ...(node.enum ?? []).map(String)];
  return [...own, ...Object.values(node.properties ?? {}).flatMap(namesOf), ...namesOf(node.items)];
}
