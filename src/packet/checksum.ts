/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Sums are kept unfolded as plain numbers while they are built: a JS number holds 2^53, so a packet of any
 * size the kernel can hand us never overflows before the final fold.
 */

/** Ones'-complement sum of `len` bytes of `buf` from `start`, unfolded. An odd last byte is padded with zero. */
export function sum16(buf: Uint8Array, start: number, len: number, initial = 0): number {
  // The high and low bytes of the 16-bit words are summed apart and joined at the end (hi * 256 + lo is the
  // same sum, word by word): plain byte loads and adds, eight bytes a step, about a third faster than
  // assembling each word.
  let hi = 0;
  let lo = 0;
  const end = start + len;
  const evenEnd = end - (len & 1);
  let i = start;
  for (; i + 7 < evenEnd; i += 8) {
    hi += buf[i] + buf[i + 2] + buf[i + 4] + buf[i + 6];
    lo += buf[i + 1] + buf[i + 3] + buf[i + 5] + buf[i + 7];
  }
  for (; i < evenEnd; i += 2) {
    hi += buf[i];
    lo += buf[i + 1];
  }
  if (evenEnd !== end) hi += buf[end - 1];
  return initial + hi * 256 + lo;
}

/**
 * Folds an unfolded sum into 16 bits with end-around carry. A non-zero sum never folds to 0, which is what
 * keeps the incremental update below exactly equal to a full recomputation.
 */
export function fold16(sum: number): number {
  // Two 32-bit folds suffice below 2^32 (every packet's sum); larger sums are split with division.
  if (sum <= 0xffffffff) {
    sum = (sum >>> 16) + (sum & 0xffff);
    return (sum >>> 16) + (sum & 0xffff);
  }
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** The checksum to store for data whose unfolded sum (with the checksum field taken as 0) is `sum`. */
export function finishChecksum(sum: number): number {
  return ~fold16(sum) & 0xffff;
}

/** Full Internet checksum of a byte range, the checksum field inside it assumed to be zero. */
export function internetChecksum(buf: Uint8Array, start: number, len: number, initial = 0): number {
  return finishChecksum(sum16(buf, start, len, initial));
}

/** True when a byte range that includes its own checksum field sums to 0xFFFF, i.e. the checksum is right. */
export function checksumIsValid(buf: Uint8Array, start: number, len: number, initial = 0): boolean {
  return fold16(sum16(buf, start, len, initial)) === 0xffff;
}

/**
 * The term to add to a running adjustment when a 16-bit word changes from `oldWord` to `newWord`:
 * ~m + m' of RFC 1624 equation 3, unfolded.
 */
export function wordDelta(oldWord: number, newWord: number): number {
  return (~oldWord & 0xffff) + (newWord & 0xffff);
}

/**
 * Applies an accumulated adjustment (a sum of `wordDelta` terms) to a stored checksum: HC' = ~(~HC + ~m + m').
 * Equation 3 rather than 2 of RFC 1624, so a result is never 0xFFFF where a full recomputation gives 0x0000
 * (the corner where RFC 1141's method goes wrong).
 */
export function adjustChecksum(checksum: number, adjustment: number): number {
  return ~fold16((~checksum & 0xffff) + adjustment) & 0xffff;
}

/** True when every byte of the range is zero, the checksum field at `skip` excepted. */
function allZeroExcept(buf: Uint8Array, start: number, len: number, skip: number): boolean {
  for (let i = start; i < start + len; i++) if (buf[i] !== 0 && i !== skip && i !== skip + 1) return false;
  return true;
}

/**
 * Applies `adjustment` to the big-endian checksum stored at `at`, for a checksum covering `len` bytes from
 * `start`. Equation 3 yields 0x0000 whenever the new data sums to ones'-complement zero; that is what a full
 * recomputation gives too, except when the data is all zeros (an ICMP echo reply with id 0, seq 0 and no
 * payload), where the full checksum is 0xFFFF and a receiver rejects 0x0000. That 1-in-65536 case is checked.
 */
export function adjustChecksumAt(buf: Uint8Array, start: number, len: number, at: number, adjustment: number): void {
  let c = adjustChecksum((buf[at] << 8) | buf[at + 1], adjustment);
  if (c === 0 && allZeroExcept(buf, start, len, at)) c = 0xffff;
  buf[at] = c >> 8;
  buf[at + 1] = c & 0xff;
}

/** Writes the full checksum of `len` bytes from `start` into the big-endian field at `at` (zeroed first). */
export function writeChecksumAt(buf: Uint8Array, start: number, len: number, at: number, initial = 0): void {
  buf[at] = 0;
  buf[at + 1] = 0;
  const c = internetChecksum(buf, start, len, initial);
  buf[at] = c >> 8;
  buf[at + 1] = c & 0xff;
}
