/**
 * The Sendmail milter protocol, version 6, as Postfix speaks it (MILTER_README, Postfix's
 * milter8.c; Sendmail's libmilter/mfdef.h for the numbers): every packet is a 4-byte
 * big-endian length, one command byte and its data. This module decodes the MTA's commands
 * (SMFIC_*) into typed values and encodes the milter's replies (SMFIR_*); framing is in
 * frames.ts, the conversation in listener/milter/.
 *
 * Hand-written: no Node milter library is kept up (npm has no "milter", "node-milter" or
 * "milter-protocol" package as of 2026-12, and the Node ports on GitHub are unmaintained and
 * lack option negotiation of protocol 6: macro lists, no-reply flags, HDR_LEADSPC). The
 * protocol is small and fixed; test/lib/milter/ checks it over a real socket and against
 * Debian's miltertest and a real Postfix.
 *
 * Fails with MilterProtocolError (a packet whose data does not parse); the caller closes the
 * connection and the MTA applies its milter_default_action.
 */

/** Commands the MTA sends (SMFIC_*). */
export const Cmd = {
  ABORT: 0x41, // 'A'
  BODY: 0x42, // 'B'
  CONNECT: 0x43, // 'C'
  MACRO: 0x44, // 'D'
  BODYEOB: 0x45, // 'E'
  HELO: 0x48, // 'H'
  QUIT_NC: 0x4b, // 'K'
  HEADER: 0x4c, // 'L'
  MAIL: 0x4d, // 'M'
  EOH: 0x4e, // 'N'
  OPTNEG: 0x4f, // 'O'
  QUIT: 0x51, // 'Q'
  RCPT: 0x52, // 'R'
  DATA: 0x54, // 'T'
  UNKNOWN: 0x55, // 'U'
} as const;

/** Replies the milter sends (SMFIR_*). */
export const Reply = {
  ADDRCPT: 0x2b, // '+'
  DELRCPT: 0x2d, // '-'
  ACCEPT: 0x61, // 'a'
  REPLBODY: 0x62, // 'b'
  CONTINUE: 0x63, // 'c'
  DISCARD: 0x64, // 'd'
  ADDHEADER: 0x68, // 'h'
  INSHEADER: 0x69, // 'i'
  CHGHEADER: 0x6d, // 'm'
  PROGRESS: 0x70, // 'p'
  REJECT: 0x72, // 'r'
  TEMPFAIL: 0x74, // 't'
  REPLYCODE: 0x79, // 'y'
  OPTNEG: 0x4f, // 'O'
} as const;

/** What the milter may do to the message (SMFIF_*), offered by the MTA and asked for by us. */
export const Action = {
  ADDHDRS: 0x01,
  CHGBODY: 0x02,
  ADDRCPT: 0x04,
  DELRCPT: 0x08,
  CHGHDRS: 0x10,
  QUARANTINE: 0x20,
  CHGFROM: 0x40,
  ADDRCPT_PAR: 0x80,
  SETSYMLIST: 0x100,
} as const;

/** Steps the MTA may leave out or not wait a reply for (SMFIP_*). */
export const Proto = {
  NOCONNECT: 0x1,
  NOHELO: 0x2,
  NOMAIL: 0x4,
  NORCPT: 0x8,
  NOBODY: 0x10,
  NOHDRS: 0x20,
  NOEOH: 0x40,
  NR_HDR: 0x80,
  NOUNKNOWN: 0x100,
  NODATA: 0x200,
  SKIP: 0x400,
  RCPT_REJ: 0x800,
  NR_CONN: 0x1000,
  NR_HELO: 0x2000,
  NR_MAIL: 0x4000,
  NR_RCPT: 0x8000,
  NR_DATA: 0x10000,
  NR_UNKN: 0x20000,
  NR_EOH: 0x40000,
  NR_BODY: 0x80000,
  HDR_LEADSPC: 0x100000,
} as const;

/** Where a macro list applies (SMFIM_*), in SMFIC_OPTNEG's reply. */
export const MacroStage = { CONNECT: 0, HELO: 1, ENVFROM: 2, ENVRCPT: 3, DATA: 4, EOM: 5, EOH: 6 } as const;

export const MILTER_VERSION = 6;
/** Largest body chunk of SMFIC_BODY and SMFIR_REPLBODY (libmilter's MILTER_CHUNK_SIZE). */
export const MAX_CHUNK = 65535;

export type MilterCommand =
  | { kind: 'optneg'; version: number; actions: number; protocol: number }
  | { kind: 'macro' /** The command the macros are for (a Cmd value). */; for: number; macros: [string, string][] }
  | { kind: 'connect'; hostname: string; family: 'inet' | 'inet6' | 'unix' | 'unknown'; port: number; address: string }
  | { kind: 'helo'; name: string }
  | { kind: 'mail'; args: string[] }
  | { kind: 'rcpt'; args: string[] }
  | { kind: 'data' }
  | { kind: 'header'; name: string; value: Buffer }
  | { kind: 'eoh' }
  | { kind: 'body'; chunk: Buffer }
  | { kind: 'eom'; chunk: Buffer }
  | { kind: 'abort' }
  | { kind: 'quit' }
  | { kind: 'quitNc' }
  | { kind: 'unknown'; line: string };

export class MilterProtocolError extends Error {
  override readonly name = 'MilterProtocolError';
}

/** One packet's command byte and data (without the length) as a typed command. */
export function decodeCommand(code: number, data: Buffer): MilterCommand {
  switch (code) {
    case Cmd.OPTNEG:
      if (data.length < 12) throw new MilterProtocolError(`SMFIC_OPTNEG of ${data.length} bytes, expected 12`);
      return { kind: 'optneg', version: data.readUInt32BE(0), actions: data.readUInt32BE(4), protocol: data.readUInt32BE(8) };
    case Cmd.MACRO: {
      if (data.length < 1) throw new MilterProtocolError('SMFIC_MACRO without a command code');
      const parts = strings(data.subarray(1), 'SMFIC_MACRO');
      const macros: [string, string][] = [];
      for (let i = 0; i + 1 < parts.length; i += 2) macros.push([parts[i].toString('latin1'), parts[i + 1].toString('utf8')]);
      return { kind: 'macro', for: data[0], macros };
    }
    case Cmd.CONNECT:
      return decodeConnect(data);
    case Cmd.HELO:
      return { kind: 'helo', name: (strings(data, 'SMFIC_HELO')[0] ?? Buffer.alloc(0)).toString('utf8') };
    case Cmd.MAIL:
    case Cmd.RCPT: {
      const args = strings(data, code === Cmd.MAIL ? 'SMFIC_MAIL' : 'SMFIC_RCPT').map((b) => b.toString('utf8'));
      if (args.length === 0) throw new MilterProtocolError('envelope command without an address');
      return code === Cmd.MAIL ? { kind: 'mail', args } : { kind: 'rcpt', args };
    }
    case Cmd.DATA:
      return { kind: 'data' };
    case Cmd.HEADER: {
      const parts = strings(data, 'SMFIC_HEADER');
      if (parts.length !== 2) throw new MilterProtocolError(`SMFIC_HEADER with ${parts.length} strings, expected name and value`);
      return { kind: 'header', name: parts[0].toString('latin1'), value: parts[1] };
    }
    case Cmd.EOH:
      return { kind: 'eoh' };
    case Cmd.BODY:
      return { kind: 'body', chunk: data };
    case Cmd.BODYEOB:
      return { kind: 'eom', chunk: data };
    case Cmd.ABORT:
      return { kind: 'abort' };
    case Cmd.QUIT:
      return { kind: 'quit' };
    case Cmd.QUIT_NC:
      return { kind: 'quitNc' };
    case Cmd.UNKNOWN:
      return { kind: 'unknown', line: (strings(data, 'SMFIC_UNKNOWN')[0] ?? Buffer.alloc(0)).toString('utf8') };
    default:
      throw new MilterProtocolError(`unknown command 0x${code.toString(16)}`);
  }
}

function decodeConnect(data: Buffer): MilterCommand {
  const nul = data.indexOf(0);
  if (nul < 0 || nul + 1 >= data.length) throw new MilterProtocolError('SMFIC_CONNECT without a host name and family');
  const hostname = data.subarray(0, nul).toString('utf8');
  const fam = String.fromCharCode(data[nul + 1]);
  const family = fam === '4' ? 'inet' : fam === '6' ? 'inet6' : fam === 'L' ? 'unix' : 'unknown';
  if (family === 'unknown') return { kind: 'connect', hostname, family, port: 0, address: '' };
  const rest = data.subarray(nul + 2);
  if (rest.length < 3) throw new MilterProtocolError('SMFIC_CONNECT without a port and address');
  const address = (strings(rest.subarray(2), 'SMFIC_CONNECT')[0] ?? Buffer.alloc(0)).toString('latin1');
  return { kind: 'connect', hostname, family, port: rest.readUInt16BE(0), address };
}

/** NUL-terminated strings; the last must be terminated too. */
function strings(data: Buffer, what: string): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < data.length) {
    const nul = data.indexOf(0, pos);
    if (nul < 0) throw new MilterProtocolError(`${what}: string without its NUL terminator`);
    out.push(data.subarray(pos, nul));
    pos = nul + 1;
  }
  return out;
}

/** A whole packet: length, code, data. */
export function packet(code: number, ...data: Buffer[]): Buffer {
  const size = data.reduce((n, d) => n + d.length, 0);
  const head = Buffer.allocUnsafe(5);
  head.writeUInt32BE(size + 1, 0);
  head[4] = code;
  return Buffer.concat([head, ...data], size + 5);
}

const cstr = (s: string | Buffer) => Buffer.concat([typeof s === 'string' ? Buffer.from(s, 'utf8') : s, Buffer.alloc(1)]);
const u32 = (n: number) => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0, 0);
  return b;
};

/** SMFIC_OPTNEG's answer; `macros` asks for macro lists per stage (needs Action.SETSYMLIST). */
export function optnegReply(version: number, actions: number, protocol: number, macros: ReadonlyMap<number, string> = new Map()): Buffer {
  const lists = [...macros].flatMap(([stage, list]) => [u32(stage), cstr(list)]);
  return packet(Reply.OPTNEG, u32(version), u32(actions), u32(protocol), ...lists);
}

/** A reply without data: CONTINUE, ACCEPT, DISCARD, REJECT, TEMPFAIL, PROGRESS. */
export function simpleReply(code: number): Buffer {
  return packet(code);
}

/**
 * SMFIR_REPLYCODE "550 5.7.1 text". Line breaks are dropped and '%' doubled: the MTA
 * treats the text as one line, and libmilter-compatible MTAs read '%' as a format escape.
 */
export function replyCode(code: string, enhanced: string, text: string): Buffer {
  const clean = text.replace(/[\r\n\0]+/g, ' ').replace(/%/g, '%%');
  return packet(Reply.REPLYCODE, cstr(`${code} ${enhanced} ${clean}`));
}

/** SMFIR_INSHEADER: insert the field at `index` (0 = top) of the header as the milter saw it. */
export function insertHeader(index: number, name: string, value: Buffer): Buffer {
  return packet(Reply.INSHEADER, u32(index), cstr(name), cstr(value));
}

/** SMFIR_CHGHEADER: change the `index`-th (from 1) field of this name; an empty value deletes it. */
export function changeHeader(index: number, name: string, value: Buffer): Buffer {
  return packet(Reply.CHGHEADER, u32(index), cstr(name), cstr(value));
}

/** SMFIR_ADDHEADER: append the field below the last one. */
export function addHeader(name: string, value: Buffer): Buffer {
  return packet(Reply.ADDHEADER, cstr(name), cstr(value));
}

/** SMFIR_REPLBODY for one chunk of the new body (at most MAX_CHUNK bytes; the caller splits). */
export function replaceBody(chunk: Buffer): Buffer {
  if (chunk.length > MAX_CHUNK) throw new RangeError(`SMFIR_REPLBODY chunk of ${chunk.length} bytes`);
  return packet(Reply.REPLBODY, chunk);
}
