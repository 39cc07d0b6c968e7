/**
 * The notice templates of src/notify/notices.ts (docs/notifications.md): plain-text files with a Subject line, an empty
 * line and the body, with `${name}` placeholders. One per audience (admin, recipient, sender),
 * optionally one per audience and category (`admin-virus.txt`, `sender-banned.txt`, ...);
 * a site's folder (main config notify.templateDir) is looked in first, then the English ones
 * shipped in templates/notices/. All are read and checked at start-up and reload, so a typo
 * refuses the configuration instead of sending notices with holes.
 *
 * Values come from the message (its Subject, From, addresses): each is cut to one line of
 * printable ASCII (others become "?", as `quarantine list` shows them) and a length cap, so a
 * crafted Subject cannot add header fields or lines to a notice.
 *
 * Fails with CFG_TEMPLATE_INVALID naming the file: unreadable, over 64 KiB, no Subject line,
 * an unknown placeholder.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PostsealError } from '../errors';

/**
 * What kind of content check blocked a message (pipeline/stage.ts Decision.category), for the
 * notices (amavisd's $virus_admin, $banned_admin, $spam_admin, $bad_header_admin).
 */
export type NoticeCategory = 'virus' | 'banned' | 'spam' | 'bad-header';

export const AUDIENCES = ['admin', 'recipient', 'sender'] as const;
export type Audience = (typeof AUDIENCES)[number];
export const CATEGORIES: readonly NoticeCategory[] = ['virus', 'banned', 'spam', 'bad-header'];

/** Every placeholder a template may use; docs/notifications.md explains each. */
export const PLACEHOLDERS = [
  'id',
  'queueId',
  'sender',
  'recipients',
  'from',
  'subject',
  'messageId',
  'reason',
  'action',
  'quarantineId',
  'category',
  'hostname',
  'client',
  'date',
] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];
export type TemplateValues = Readonly<Record<Placeholder, string>>;

export interface Template {
  readonly file: string;
  readonly subject: string;
  readonly body: string;
}

/** The template for each audience and category. */
export type Templates = ReadonlyMap<`${Audience}:${NoticeCategory}`, Template>;

export const SHIPPED_TEMPLATE_DIR = path.resolve(__dirname, '../../templates/notices');

const MAX_TEMPLATE_BYTES = 65536;
/** Longest value put into a notice (recipients get more: a list). */
const MAX_VALUE_CHARS = 300;
const MAX_LIST_CHARS = 2000;
const PLACEHOLDER = /\$\{([^}]*)\}/g;

function invalid(file: string, why: string): PostsealError {
  return new PostsealError('CFG_TEMPLATE_INVALID', `${file}: ${why}`);
}

export function parseTemplate(file: string, text: string): Template {
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  const first = /^Subject:[ \t]*(.*)$/i.exec(lines[0] ?? '');
  if (!first || (lines.length > 1 && lines[1] !== '')) throw invalid(file, 'the first line must be "Subject: ..." and the second empty; the body follows');
  const body = lines.slice(2).join('\n');
  for (const m of `${first[1]}\n${body}`.matchAll(PLACEHOLDER)) {
    if (!(PLACEHOLDERS as readonly string[]).includes(m[1])) throw invalid(file, `unknown placeholder \${${m[1]}}; known: ${PLACEHOLDERS.map((p) => `\${${p}}`).join(' ')}`);
  }
  return { file, subject: first[1], body: body.replace(/\n+$/, '\n') };
}

function readTemplate(file: string): Template {
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (err) {
    throw new PostsealError('CFG_TEMPLATE_INVALID', `${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  if (raw.length > MAX_TEMPLATE_BYTES) throw invalid(file, `${raw.length} bytes, more than ${MAX_TEMPLATE_BYTES}`);
  return parseTemplate(file, raw.toString('utf8'));
}

/** The templates of a site folder ('' for none) over the shipped ones. */
export function loadTemplates(siteDir: string, shippedDir = SHIPPED_TEMPLATE_DIR): Templates {
  if (siteDir && !existsSync(siteDir)) throw invalid(siteDir, 'notify.templateDir does not exist');
  const dirs = siteDir ? [siteDir, shippedDir] : [shippedDir];
  const out = new Map<`${Audience}:${NoticeCategory}`, Template>();
  const cache = new Map<string, Template>();
  for (const audience of AUDIENCES) {
    for (const category of CATEGORIES) {
      const names = [`${audience}-${category}.txt`, `${audience}.txt`];
      const file = dirs.flatMap((d) => names.map((n) => path.join(d, n))).find((f) => existsSync(f));
      if (!file) throw invalid(path.join(shippedDir, `${audience}.txt`), 'missing (the shipped templates belong to the package)');
      let t = cache.get(file);
      if (!t) cache.set(file, (t = readTemplate(file)));
      out.set(`${audience}:${category}`, t);
    }
  }
  return out;
}

/** One line of printable ASCII, at most `max` characters. */
export function sanitize(value: string, max = MAX_VALUE_CHARS): string {
  const clean = value.replace(/[\r\n\t]+/g, ' ').replace(/[^\x20-\x7e]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}...` : clean;
}

/** A list of addresses for ${recipients}: comma-separated, "and N more" past the cap. */
export function addressList(addresses: readonly string[]): string {
  let out = '';
  for (let i = 0; i < addresses.length; i++) {
    const next = sanitize(addresses[i]);
    if (out.length + next.length > MAX_LIST_CHARS) return `${out}, and ${addresses.length - i} more`;
    out = out ? `${out}, ${next}` : next;
  }
  return out;
}

/** The notice's subject and body with the values in place (values already sanitized by the caller or here). */
export function render(t: Template, values: TemplateValues): { subject: string; body: string } {
  const fill = (s: string) => s.replace(PLACEHOLDER, (_, name: Placeholder) => sanitize(values[name] ?? '', name === 'recipients' ? MAX_LIST_CHARS + 40 : MAX_VALUE_CHARS));
  return { subject: fill(t.subject).slice(0, 400), body: fill(t.body) };
}
