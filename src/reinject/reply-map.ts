/**
 * What the upstream hears when the downstream answered: its reply keeps its code class, its
 * enhanced code and its text. When the downstream could not answer (refused, timed out, broke
 * the session) the error's reply comes from smtp/error-replies.ts: a 451 4.4.x, so Postfix
 * keeps the mail queued.
 */
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

export function isSuccess(r: DownstreamReply): boolean {
  return r.code >= 200 && r.code < 300;
}

/** The reply as the downstream wrote it, enhanced code included, cut for a log line. */
export function replyLine(r: DownstreamReply, max = 200): string {
  return [r.code, r.enhanced, r.text]
    .filter((x) => x !== undefined)
    .join(' ')
    .slice(0, max);
}
