/**
 * `postseal srs forward|reverse ADDRESS`: what the SRS maps (services.srs) answer for one
 * address, with the configured domain and secrets file (whether or not the service is enabled).
 * Prints the rewritten address and exits 0; prints why it is left alone or refused on standard
 * error and exits 1 (CFG_SRS_SECRETS and other configuration errors as well); usage errors exit 2.
 */
import { isPostsealError } from '../errors';
import { srsEngineFor } from '../services/srs';
import { UsageError, loadOrExplain, parse, withUsage } from './args';

const help = `Usage: postseal srs forward|reverse ADDRESS [--config FILE] [--domain DOMAIN] [--secrets FILE]

forward: the SRS address our forward map (sender_canonical_maps) makes of an envelope sender.
reverse: the address our reverse map (recipient_canonical_maps) makes of an SRS address.
  --config FILE    main configuration (YAML) whose services.srs is used; default: see postseal --help
  --domain DOMAIN  instead of services.srs.domain
  --secrets FILE   instead of services.srs.secretsFile`;

export function runSrs(args: string[]): Promise<number> {
  return withUsage(async () => {
    const { values, positionals, help: h } = parse(args, { config: { type: 'string', short: 'c' }, domain: { type: 'string' }, secrets: { type: 'string' } }, help);
    if (h) {
      process.stdout.write(`${h}\n`);
      return 0;
    }
    const [direction, address, ...extra] = positionals;
    if ((direction !== 'forward' && direction !== 'reverse') || address === undefined || extra.length) throw new UsageError(`expected forward|reverse ADDRESS\n\n${help}`);
    const config = loadOrExplain(values.config);
    if (!config) return 1;
    const s = { ...config.main.services.srs, domain: values.domain ?? config.main.services.srs.domain, secretsFile: values.secrets ?? config.main.services.srs.secretsFile };
    if (!s.domain) throw new UsageError(`no SRS domain: set services.srs.domain or pass --domain\n\n${help}`);
    let engine: ReturnType<typeof srsEngineFor>;
    try {
      engine = srsEngineFor(s);
    } catch (err) {
      if (!isPostsealError(err)) throw err;
      process.stderr.write(`postseal: configuration error ${err.code}\n${err.message}\n`);
      return 1;
    }
    const r = direction === 'forward' ? engine.forward(address) : engine.reverse(address);
    if (r.kind === 'rewritten') {
      process.stdout.write(`${r.address}\n`);
      return 0;
    }
    process.stderr.write(`postseal: ${address}: ${r.kind === 'invalid' ? 'refused' : 'not rewritten'} (${r.reason})\n`);
    return 1;
  });
}
