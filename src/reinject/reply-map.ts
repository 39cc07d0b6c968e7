/**
 * What the upstream hears when the downstream answered, or failed to (DESIGN.md §2.5):
 * a downstream reply keeps its code class, its enhanced code and its text; a refused
 * connection, a timeout or a broken session is a 451 4.4.x, so Postfix keeps the mail queued.
 */
import { isPostsealError } from '../errors';
import { replies, withText, type SmtpReply } from '../smtp/replies';
import type { DownstreamReply } from './smtp-client';

export function mirrorReply(r: DownstreamReply): SmtpReply {
  const cls = String(r.code)[0];
  if (cls !== '2' && cls !== '4' && cls !== '5') {
    return withText(replies.reinjectFailed, `downstream answered ${r.code} ${r.text}`);
  }
  const enhanced = r.enhanced && r.enhanced[0] === cls ? r.enhanced : `${cls}.0.0`;
  return { code: String(r.code), enhanced, text: r.text } as SmtpReply;
}

export function failureReply(err: unknown): SmtpReply {
  const detail = err instanceof Error ? err.message : String(err);
  if (isPostsealError(err, 'REINJECT_REFUSED')) return withText(replies.reinjectRefused, `${replies.reinjectRefused.text}: ${detail}`);
  if (isPostsealError(err, 'REINJECT_TIMEOUT')) return withText(replies.reinjectTimeout, `${replies.reinjectTimeout.text}: ${detail}`);
  return withText(replies.reinjectFailed, `${replies.reinjectFailed.text}: ${detail}`);
}

export function isSuccess(r: DownstreamReply): boolean {
  return r.code >= 200 && r.code < 300;
}
