/**
 * Reads the SRS secrets file (services.srs.secretsFile): one secret a line, the first signs and
 * every line verifies, so a new secret goes on top and the old one stays below until the
 * addresses signed with it have expired (maxAgeDays). Blanks at the ends of a line are trimmed,
 * and such a line verifies as written too (postsrsd's reading of it).
 *
 * Refused with CFG_SRS_SECRETS (the message names the file and the fix): missing or unreadable,
 * no secret in it, or readable by others (anyone who reads it can forge addresses that our
 * reverse map turns into any recipient: an open relay for bounces).
 */
import { readFileSync, statSync } from 'node:fs';
import { PostsealError } from '../../errors';

/** Secrets shorter than this are refused: a guessable secret is a forgeable one. */
const MIN_SECRET_LENGTH = 8;

/** `where`: the main file and pointer that name the file, put before the message (start-up and `config check`). */
export function readSrsSecrets(file: string, where = ''): string[] {
  try {
    return readSecrets(file);
  } catch (err) {
    if (!where || !(err instanceof PostsealError)) throw err;
    throw new PostsealError(err.code, `${where}${err.message}`, { cause: err.cause });
  }
}

function readSecrets(file: string): string[] {
  let text: string;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new PostsealError('CFG_SRS_SECRETS', `SRS secrets file ${file} is not a regular file`);
    if (st.mode & 0o004)
      throw new PostsealError('CFG_SRS_SECRETS', `SRS secrets file ${file} is readable by everyone (mode ${(st.mode & 0o777).toString(8)}); run chmod 600 ${file}`);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof PostsealError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    // postsrsd's /etc/postsrsd.secret is root's, mode 600: the usual EACCES of a migration.
    const fix =
      code === 'EACCES' || code === 'EPERM'
        ? `postseal runs as uid ${process.getuid?.()}, which may not read it: chown it to the user postseal runs as (keeping mode 600), or copy postsrsd's secret into a file of that user's`
        : `create it with one random secret a line, e.g. (umask 077; head -c 24 /dev/urandom | base64 > ${file})`;
    throw new PostsealError('CFG_SRS_SECRETS', `SRS secrets file ${file} cannot be read (${code}); ${fix}`, { cause: err });
  }
  const lines = text.split('\n').map((l) => l.replace(/\r$/, ''));
  const secrets = lines.map((l) => l.trim()).filter((l) => l !== '');
  if (secrets.length === 0) throw new PostsealError('CFG_SRS_SECRETS', `SRS secrets file ${file} holds no secret; put one random secret on its first line`);
  const short = secrets.findIndex((s) => s.length < MIN_SECRET_LENGTH);
  if (short >= 0) throw new PostsealError('CFG_SRS_SECRETS', `SRS secrets file ${file}: the secret on line ${short + 1} is shorter than ${MIN_SECRET_LENGTH} characters`);
  // pfix-srsd trims a line, postsrsd keeps its blanks: a line with blanks at an end also
  // verifies as written (after all the others), so both carry over; the trimmed form signs.
  const asWritten = lines.filter((l) => l.trim() !== '' && l !== l.trim() && !secrets.includes(l));
  return [...secrets, ...asWritten];
}
