/**
 * Writes a whole buffer to a file handle. FileHandle.write makes one write(2), and on a file
 * system that is nearly full write(2) writes what fits and returns the short count without an
 * error (ENOSPC comes only on the next call): a caller that took one write for the whole
 * buffer closed a file with its tail missing and counted it complete (a spool file or a held
 * message cut short, then delivered or released as if whole). Loops until every byte is
 * written; the error of the call that fails (ENOSPC, EDQUOT, EIO) is thrown.
 */
import type { FileHandle } from 'node:fs/promises';

export async function writeFully(file: FileHandle, data: Buffer): Promise<void> {
  for (let offset = 0; offset < data.length; ) {
    const { bytesWritten } = await file.write(data, offset, data.length - offset);
    // write(2) writes at least one byte or fails; 0 would loop for ever.
    if (bytesWritten <= 0) throw new Error(`write returned ${bytesWritten} with ${data.length - offset} bytes left`);
    offset += bytesWritten;
  }
}
