/**
 * Option parsing shared by the subcommands (node:util parseArgs), with one usage-error path,
 * and which configuration file a command reads (configFile: --config, POSTSEAL_CONFIG,
 * /etc/postseal/postseal.yaml, else the embedded example with a notice on stderr).
 */
import { existsSync } from 'node:fs';
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

/** Where an installed postseal looks when neither --config nor POSTSEAL_CONFIG says. */
export const systemConfigFile = '/etc/postseal/postseal.yaml';

export interface ConfigChoice {
  readonly file: string;
  /** Set when falling back to the embedded example: said once on stderr, so a reader knows which file ran. */
  readonly notice?: string;
}

/**
 * --config wins, then POSTSEAL_CONFIG, then /etc/postseal/postseal.yaml. Without any of them
 * the embedded example (the checkout's postseal.yaml) runs, so `npm start` in a fresh checkout
 * still works, but the notice names both ways to choose a file: a postmaster whose /etc file
 * is missing must not believe it was read. `env` and `systemFile` are parameters for the tests.
 */
export function configFile(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, systemFile = systemConfigFile): ConfigChoice {
  if (flag) return { file: flag };
  if (env.POSTSEAL_CONFIG) return { file: env.POSTSEAL_CONFIG };
  if (existsSync(systemFile)) return { file: systemFile };
  return {
    file: builtinConfigFile,
    notice: `postseal: ${systemFile} does not exist; using the embedded example ${builtinConfigFile} (choose a file with --config FILE or POSTSEAL_CONFIG=FILE)`,
  };
}

/** The file to read, saying on stderr when it is the embedded example. */
export function chooseConfigFile(flag: string | undefined): string {
  const choice = configFile(flag);
  if (choice.notice) process.stderr.write(`${choice.notice}\n`);
  return choice.file;
}

/** Loads the config or prints why not: "<code>\n<file>: <pointer>: <what>". */
export function loadOrExplain(flag: string | undefined): LoadedConfig | null {
  const file = chooseConfigFile(flag);
  try {
    return loadConfig(file);
  } catch (err) {
    if (!isPostsealError(err)) throw err;
    process.stderr.write(`postseal: configuration error ${err.code}\n${err.message}\n`);
    return null;
  }
}

/** A CFG_* error as log fields: code, file, line or JSON pointer where the message names them, and the whole message. */
export function configErrorFields(err: { code: string; message: string }): { code: string; file?: string; line?: number; pointer?: string; reason: string } {
  // The loaders' messages start "<file>: <pointer>: <what>" or "<file>:<line>:<column>: <what>" (config/yaml-file.ts).
  const m = /^([^:\n]+?)(?::(\d+)(?::\d+)?)?: (?:(\/[^\s:]*): )?/.exec(err.message);
  const fields: { code: string; file?: string; line?: number; pointer?: string; reason: string } = { code: err.code, reason: err.message };
  if (m?.[1].startsWith('/')) {
    fields.file = m[1];
    if (m[2]) fields.line = Number(m[2]);
    if (m[3]) fields.pointer = m[3];
  }
  return fields;
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
