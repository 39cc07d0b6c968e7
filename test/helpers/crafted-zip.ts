/**
 * Zips no honest tool writes, byte by byte (PKWARE APPNOTE 6.3.10): one stored member whose
 * central name, local name and Info-ZIP Unicode Path field (0x7075) are chosen separately, for
 * the tests of name tricks. The CRC of the Unicode Path field comes from node:zlib's crc32
 * when the test wants it right.
 */
import zlib from 'node:zlib';

export interface CraftedMember {
  readonly central: string;
  readonly local?: string;
  /** A Unicode Path extra field in the central header; `crcOf` is the raw name its CRC is made from (default: the central name). */
  readonly unicodePath?: { readonly name: string; readonly crcOf?: string };
  readonly data: string;
}

function unicodeExtra(u: NonNullable<CraftedMember['unicodePath']>, central: string): Buffer {
  const name = Buffer.from(u.name, 'utf8');
  const field = Buffer.alloc(4 + 5 + name.length);
  field.writeUInt16LE(0x7075, 0);
  field.writeUInt16LE(5 + name.length, 2);
  field[4] = 1;
  field.writeUInt32LE(zlib.crc32(Buffer.from(u.crcOf ?? central, 'latin1')), 5);
  name.copy(field, 9);
  return field;
}

/** A zip of stored members; `prefix` bytes go in front (offsets stay those of the unprefixed archive, as `cat junk a.zip` leaves them). */
export function craftedZip(members: readonly CraftedMember[], prefix = Buffer.alloc(0)): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const m of members) {
    const data = Buffer.from(m.data, 'latin1');
    const crc = zlib.crc32(data);
    const localName = Buffer.from(m.local ?? m.central, 'latin1');
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(localName.length, 26);
    const local = Buffer.concat([lh, localName, data]);
    const centralName = Buffer.from(m.central, 'latin1');
    const extra = m.unicodePath ? unicodeExtra(m.unicodePath, m.central) : Buffer.alloc(0);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(0x0314, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(centralName.length, 28);
    ch.writeUInt16LE(extra.length, 30);
    ch.writeUInt32LE(offset, 42);
    centrals.push(Buffer.concat([ch, centralName, extra]));
    locals.push(local);
    offset += local.length;
  }
  const dir = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(members.length, 8);
  end.writeUInt16LE(members.length, 10);
  end.writeUInt32LE(dir.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([prefix, ...locals, dir, end]);
}
