/**
 * `openCaptureReader(path)`: opens a capture (`-`: standard input) and reads it with the classic pcap or the
 * pcapng reader, chosen from its first four bytes (so a pipe works too: nothing is read twice).
 */
import { closeSync } from 'node:fs';
import { TunpipeError } from '../errors.js';
import { openInput, readPrefix } from './chunked-input.js';
import { PCAPNG_MAGIC } from './format.js';
import { PcapngReader } from './pcapng-reader.js';
import { PcapReader, u32le, type CaptureReader, type CaptureReaderOptions } from './reader.js';

export function openCaptureReader(path: string, options: CaptureReaderOptions = {}): CaptureReader {
  const fd = openInput(path);
  let prefix: Buffer;
  try {
    prefix = readPrefix(fd, 4);
  } catch (err) {
    if (fd !== 0) closeSync(fd);
    throw new TunpipeError(`cannot read ${path}: ${(err as Error).message}`, (err as NodeJS.ErrnoException).code);
  }
  const opened = { fd, prefix };
  if (prefix.length === 4 && u32le(prefix, 0) === PCAPNG_MAGIC) return new PcapngReader(path, options, opened);
  return new PcapReader(path, options, opened);
}
