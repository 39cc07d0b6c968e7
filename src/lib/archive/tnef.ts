/**
 * The attachments of a TNEF stream (MS-OXTNEF: Outlook's and Exchange's `winmail.dat`,
 * `application/ms-tnef`), as amavisd-new reads them with Convert::TNEF: each attachment's file
 * names and bytes, so the banned stage checks them as it does an archive's members. Outlook
 * mail to recipients who do not run Outlook carries its attachments this way, so a program in
 * a winmail.dat would otherwise go unchecked.
 *
 * An attachment starts at attAttachRendData; its names come from attAttachTitle (an 8.3 or
 * longer name in the message's code page), attAttachTransportFilename and, in its MAPI
 * properties (attAttachment), PR_ATTACH_LONG_FILENAME, PR_ATTACH_FILENAME and PR_DISPLAY_NAME:
 * all of them, since clients differ in which they show; PR_ATTACH_MIME_TAG is its declared type. Its bytes are attAttachData or, as Exchange writes
 * them, PR_ATTACH_DATA_BIN / PR_ATTACH_DATA_OBJ (an embedded message, itself TNEF, whose
 * attachments are walked into like a zip in a zip).
 *
 * Hand-written: no npm package reads TNEF (we looked for one that is kept); the format is a
 * flat list of length-prefixed attributes. Nothing is copied: bytes are views of the input.
 * Attribute checksums are not checked (Debian's `tnef` only warns on them); a length that runs
 * past the end or a property of an unknown type is damage (`problem`), with what was read kept.
 */

export const TNEF_SIGNATURE = 0x223e9f78;

export interface TnefAttachment {
  readonly names: string[];
  /** PR_ATTACH_MIME_TAG: the MIME type Outlook gives it. */
  readonly declaredTypes: string[];
  /**
   * The attachment's bytes, each place that held some (attAttachData, PR_ATTACH_DATA_*): one
   * client reads one and another the other, so a stream with two different ones gives both.
   * Empty when it has none (a link, an OLE object without data).
   */
  readonly data: Buffer[];
}

export interface TnefListing {
  readonly attachments: TnefAttachment[];
  truncated: boolean;
  problem?: string;
}

const LVL_MESSAGE = 0x01;
const LVL_ATTACHMENT = 0x02;
/**
 * Attribute IDs by their low word only: the high word is a type (atpByte, atpString...) that
 * Debian's tnef does not check, so attAttachData written as 0x0001800f is still extracted.
 */
const ATT_ATTACH_REND_DATA = 0x9002;
const ATT_ATTACH_TITLE = 0x8010;
const ATT_ATTACH_DATA = 0x800f;
const ATT_ATTACH_TRANSPORT_FILENAME = 0x9001;
const ATT_ATTACHMENT = 0x9005;

const PR_ATTACH_DATA = 0x3701;
const PR_ATTACH_FILENAME = 0x3704;
const PR_ATTACH_LONG_FILENAME = 0x3707;
const PR_DISPLAY_NAME = 0x3001;
const PR_ATTACH_MIME_TAG = 0x370e;
/** Every name a client may show or save the attachment under. */
const NAME_PROPERTIES = new Set([PR_ATTACH_FILENAME, PR_ATTACH_LONG_FILENAME, PR_DISPLAY_NAME]);
const PT_STRING8 = 0x001e;
const PT_UNICODE = 0x001f;
const PT_BINARY = 0x0102;
const PT_OBJECT = 0x000d;
const MV_FLAG = 0x1000;
/** Bytes one value of a fixed-size property type takes, padding included (MS-OXTNEF 2.1.3.4). */
const FIXED: Record<number, number> = { 2: 4, 3: 4, 4: 4, 5: 8, 6: 8, 7: 8, 10: 4, 11: 4, 20: 8, 64: 8, 72: 16 };
const VARIABLE = new Set([PT_STRING8, PT_UNICODE, PT_BINARY, PT_OBJECT]);
/** An object's data starts with the interface id it is (IID_IMessage for an embedded message). */
const IID_BYTES = 16;
/** Properties read per attachment, values per multi-valued property: a list cannot make us loop for long. */
const MAX_PROPERTIES = 10_000;
const MAX_NAME = 1024;
/**
 * Differing names, MIME tags and copies of the bytes kept per attachment. Outlook writes at most
 * five names and two copies; each new one is compared with those kept, so without a cap 20,000
 * attAttachData attributes of 4 bytes (300 KB) took 22 s of one core here. More is damage.
 */
const MAX_COPIES = 16;

/** Whether `data` starts with the TNEF signature. */
export function isTnef(data: Buffer): boolean {
  return data.length >= 6 && data.readUInt32LE(0) === TNEF_SIGNATURE;
}

/** The attachments of the TNEF stream in `data`, at most `maxMembers` (then `truncated`). Never throws. */
export function listTnef(data: Buffer, maxMembers: number): TnefListing {
  const out: TnefListing = { attachments: [], truncated: false };
  if (!isTnef(data)) return { ...out, problem: 'no TNEF signature' };
  let at = 6;
  let current: TnefAttachment | null = null;
  while (at < data.length) {
    // Fewer bytes than an attribute header after the last attribute, as some gateways leave
    // (a line end): Debian's tnef warns of garbage and extracts all the same; nothing fits in them.
    if (at + 9 > data.length) return out;
    const level = data[at];
    const fullId = data.readUInt32LE(at + 1);
    const id = fullId & 0xffff;
    const length = data.readUInt32LE(at + 5);
    const start = at + 9;
    if (start + length + 2 > data.length) return { ...out, problem: `attribute 0x${fullId.toString(16)} of ${length} bytes runs past the end` };
    if (level !== LVL_MESSAGE && level !== LVL_ATTACHMENT) return { ...out, problem: `attribute 0x${fullId.toString(16)} of level ${level}` };
    const value = data.subarray(start, start + length);
    at = start + length + 2;
    if (level !== LVL_ATTACHMENT) continue;
    if (id === ATT_ATTACH_REND_DATA || !current) {
      if (out.attachments.length >= maxMembers) {
        out.truncated = true;
        return out;
      }
      current = { names: [], declaredTypes: [], data: [] };
      out.attachments.push(current);
    }
    let problem: string | null = null;
    if (id === ATT_ATTACH_TITLE || id === ATT_ATTACH_TRANSPORT_FILENAME) problem = addName(current, cString(value));
    else if (id === ATT_ATTACH_DATA) problem = addData(current, value);
    else if (id === ATT_ATTACHMENT) problem = readProperties(value, current);
    // Attributes are framed by their own lengths: the attachments after one whose properties
    // cannot be read are still read (a checker set to deliver damage still sees them).
    if (problem) out.problem ??= problem;
  }
  return out;
}

/** A code-page string: up to its NUL, read as Latin-1 (the names we check are ASCII-led; no byte is lost). */
function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.toString('latin1', 0, end < 0 ? b.length : end);
}

/** Each add*: what is wrong (one copy too many), or null. */
function addName(a: TnefAttachment, name: string): string | null {
  const n = name.length > MAX_NAME ? name.slice(-MAX_NAME) : name;
  if (!n || a.names.includes(n)) return null;
  if (a.names.length >= MAX_COPIES) return `more than ${MAX_COPIES} names of one attachment`;
  a.names.push(n);
  return null;
}

/** Reads an attachment's MAPI property list for its names and data; what is wrong, or null. */
function readProperties(b: Buffer, a: TnefAttachment): string | null {
  if (b.length < 4) return 'attachment properties cut';
  const count = b.readUInt32LE(0);
  if (count > MAX_PROPERTIES) return `${count} attachment properties`;
  let at = 4;
  const need = (n: number) => at + n <= b.length;
  for (let i = 0; i < count; i++) {
    if (!need(4)) return 'attachment property cut';
    const type = b.readUInt16LE(at);
    const id = b.readUInt16LE(at + 2);
    at += 4;
    if (id >= 0x8000) {
      // A named property: its GUID and its name or number, which we do not need.
      if (!need(20)) return 'named property cut';
      const kind = b.readUInt32LE(at + 16);
      at += 20;
      if (kind === 0) at += 4;
      else {
        if (!need(4)) return 'named property cut';
        at += 4 + pad4(b.readUInt32LE(at));
      }
    }
    const base = type & ~MV_FLAG;
    const multi = (type & MV_FLAG) !== 0;
    let values = 1;
    if (multi || VARIABLE.has(base)) {
      if (!need(4)) return 'property value count cut';
      values = b.readUInt32LE(at);
      at += 4;
      if (values > MAX_PROPERTIES) return `${values} values in one property`;
    }
    for (let v = 0; v < values; v++) {
      if (VARIABLE.has(base)) {
        if (!need(4)) return 'property value cut';
        const size = b.readUInt32LE(at);
        at += 4;
        if (!need(size)) return `property 0x${id.toString(16)} value of ${size} bytes runs past the end`;
        const problem = take(a, id, base, b.subarray(at, at + size));
        if (problem) return problem;
        at += pad4(size);
      } else if (FIXED[base]) {
        if (id === PR_ATTACH_DATA || NAME_PROPERTIES.has(id)) return `property 0x${id.toString(16)} of type 0x${type.toString(16)}`;
        at += FIXED[base];
      } else return `MAPI property type 0x${type.toString(16)}`;
    }
    if (at > b.length) return 'attachment property cut';
  }
  return null;
}

function take(a: TnefAttachment, id: number, type: number, value: Buffer): string | null {
  const text = () => (type === PT_UNICODE ? value.toString('utf16le').replace(/\0+$/, '') : type === PT_STRING8 ? cString(value) : '');
  // A name or the bytes in a type that cannot hold them: Debian's tnef aborts; a reader that
  // skipped them would leave an attachment some client may still read unchecked.
  const strange = NAME_PROPERTIES.has(id) ? type !== PT_STRING8 && type !== PT_UNICODE : id === PR_ATTACH_DATA && type !== PT_BINARY && type !== PT_OBJECT;
  if (strange) return `property 0x${id.toString(16)} of type 0x${type.toString(16)}`;
  if (NAME_PROPERTIES.has(id)) return addName(a, text());
  if (id === PR_ATTACH_MIME_TAG) {
    const tag = text().trim().toLowerCase().slice(0, 200);
    if (!tag || a.declaredTypes.includes(tag)) return null;
    if (a.declaredTypes.length >= MAX_COPIES) return `more than ${MAX_COPIES} MIME tags of one attachment`;
    a.declaredTypes.push(tag);
  } else if (id === PR_ATTACH_DATA) {
    if (type === PT_BINARY) return addData(a, value);
    if (type === PT_OBJECT && value.length >= IID_BYTES) return addData(a, value.subarray(IID_BYTES));
  }
  return null;
}

function addData(a: TnefAttachment, value: Buffer): string | null {
  if (a.data.some((d) => d.equals(value))) return null;
  if (a.data.length >= MAX_COPIES) return `more than ${MAX_COPIES} copies of the bytes of one attachment`;
  a.data.push(value);
  return null;
}

function pad4(n: number): number {
  return (n + 3) & ~3;
}
