/** IPv4 options (RFC 791 3.1): which ones are copied into every fragment. */

/**
 * Returns the options of the header at `l3` whose "copied" flag is set, padded with End-of-Options to a
 * multiple of 4: what a fragment after the first one carries. Malformed options end the walk.
 */
export function copiedOptions(buf: Uint8Array, l3: number, ihl: number): Buffer {
  const out: number[] = [];
  let i = l3 + 20;
  const end = l3 + ihl;
  while (i < end) {
    const type = buf[i];
    if (type === 0) break;
    if (type === 1) {
      i++;
      continue;
    }
    if (i + 1 >= end) break;
    const len = buf[i + 1];
    if (len < 2 || i + len > end) break;
    if (type & 0x80) for (let k = 0; k < len; k++) out.push(buf[i + k]);
    i += len;
  }
  while (out.length % 4) out.push(0);
  return Buffer.from(out);
}
