/**
 * `postseal keys`: DKIM key management (amavisd genrsa/showkeys/testkeys/convert_keysfile,
 * opendkim-genkey/opendkim-testkey), one module per subcommand in cli/keys/.
 */
import { UsageError, withUsage } from './args';
import * as activate from './keys/activate';
import * as generate from './keys/generate';
import * as importKeys from './keys/import';
import * as show from './keys/show';
import * as test from './keys/test';

const subcommands: Record<string, { usage: string; run: (args: string[]) => Promise<number> }> = { generate, show, test, activate, import: importKeys };

const help = `Usage: postseal keys <subcommand> [options]

${Object.values(subcommands)
  .map((s) => `  ${s.usage}`)
  .join('\n')}

Rotation: generate a key, add it to the key table with state: staged (and to its rules in the
signing table), publish the record that show prints, then test and activate, then SIGHUP.
"postseal keys <subcommand> --help" shows a subcommand's options (docs/keys.md).`;

export function runKeys(args: string[]): Promise<number> {
  return withUsage(async () => {
    const [name, ...rest] = args;
    if (name === '--help' || name === '-h') {
      process.stdout.write(`${help}\n`);
      return 0;
    }
    const sub = name !== undefined && Object.hasOwn(subcommands, name) ? subcommands[name] : undefined;
    if (!sub) throw new UsageError(`${name === undefined ? 'keys needs a subcommand' : `unknown keys subcommand "${name}"`}\n\n${help}`);
    return sub.run(rest);
  });
}
