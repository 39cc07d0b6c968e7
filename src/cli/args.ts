/**
 * Option parsing shared by the subcommands (node:util parseArgs), with one usage-error path.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfig, type LoadedConfig } from '../setup';
import { builtinConfigFile } from '../config/load';
import { isPostsealError } from '../errors';

export class UsageError extends Error {}

export function parse<T extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: T, help: string) {
  try {
    const parsed = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
    return { ...parsed, help: (parsed.values as Record<string, unknown>).help === true ? help : null };
  } catch (err) {
    throw new UsageError(`${(err as Error).message}\n\n${help}`);
  }
}

/** Loads the config or prints why not: "<code>\n<file>: <pointer>: <what>". */
export function loadOrExplain(file: string | undefined): LoadedConfig | null {
  try {
    return loadConfig(file ?? builtinConfigFile);
  } catch (err) {
    if (!isPostsealError(err)) throw err;
    process.stderr.write(`postseal: configuration error ${err.code}\n${err.message}\n`);
    return null;
  }
}

/** Runs a subcommand body, turning usage errors into exit code 2. */
export async function withUsage(body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`postseal: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
}
