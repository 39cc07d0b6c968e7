/**
 * What the spam stage hands the spam-tag stage (lib/results.ts): that it ran on this message,
 * and whether the message is spam. Its own file, so both stages of the folder can import it.
 */
import { ResultKey } from '../../lib/results';

export interface SpamResult {
  /** The combined score; undefined when nothing was scanned (bypassed, too big, scanners failed). */
  readonly score?: number;
  /** At or above tag2Level (or rspamd's action said so): the Subject tag applies. */
  readonly spammy: boolean;
}

export const SPAM_RESULT = new ResultKey<SpamResult>('spam');
