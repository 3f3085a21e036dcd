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

export const OPT_END = 0;
export const OPT_NOP = 1;
export const OPT_RR = 7;
export const OPT_TS = 68;
export const OPT_LSRR = 131;
export const OPT_SSRR = 137;
export const OPT_ROUTER_ALERT = 148;

export const OPTION_DROP = {
  malformed: 'malformed IP options',
} as const;

/** Calls `visit(type, at, len)` for each option of the header at `l3`; stops and returns false at a malformed one. */
export function forEachOption(buf: Uint8Array, l3: number, ihl: number, visit: (type: number, at: number, len: number) => void): boolean {
  let i = l3 + 20;
  const end = l3 + ihl;
  while (i < end) {
    const type = buf[i];
    if (type === OPT_END) return true;
    if (type === OPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return false;
    const len = buf[i + 1];
    if (len < 2 || i + len > end) return false;
    visit(type, i, len);
    i += len;
  }
  return true;
}

/** Bytes of one timestamp entry for the option's flags: 4 (time only), 8 (address and time), 0 (unknown). */
function timestampEntry(flags: number): number {
  return flags === 0 ? 4 : flags === 1 || flags === 3 ? 8 : 0;
}

/**
 * Checks options the way Linux's ip_options_compile does for a received packet: lengths inside the header,
 * record route, timestamp and source route pointers in range, no option twice, a full timestamp option
 * whose overflow count can still go up, router alert of 4 bytes. Returns a drop reason or null. Unknown
 * options and timestamp flags are accepted, as the kernel does.
 */
export function checkIPv4Options(buf: Uint8Array, l3: number, ihl: number): string | null {
  const seen = new Set<number>();
  let bad = false;
  const sound = forEachOption(buf, l3, ihl, (type, at, len) => {
    if (bad) return;
    const ptr = buf[at + 2];
    if (type === OPT_RR) {
      bad = len < 3 || ptr < 4 || seen.has(OPT_RR) || (ptr <= len && ptr + 3 > len);
      seen.add(OPT_RR);
    } else if (type === OPT_LSRR || type === OPT_SSRR) {
      bad = len < 3 || ptr < 4 || seen.has(OPT_LSRR);
      seen.add(OPT_LSRR);
    } else if (type === OPT_TS) {
      if (len < 4 || ptr < 5 || seen.has(OPT_TS)) bad = true;
      else {
        const flags = buf[at + 3] & 0x0f;
        const entry = timestampEntry(flags);
        if (ptr <= len) bad = ptr + 3 > len || (entry === 8 && ptr + 7 > len);
        // Full: the receiver counts an overflow, and a count already at 15 is an error.
        else bad = flags !== 3 && buf[at + 3] >> 4 === 15;
      }
      seen.add(OPT_TS);
    } else if (type === OPT_ROUTER_ALERT) {
      bad = len < 4;
    }
  });
  return !sound || bad ? OPTION_DROP.malformed : null;
}

/** True when the header carries a loose or strict source route option. */
export function hasSourceRoute(buf: Uint8Array, l3: number, ihl: number): boolean {
  let found = false;
  forEachOption(buf, l3, ihl, (type) => {
    if (type === OPT_LSRR || type === OPT_SSRR) found = true;
  });
  return found;
}

/**
 * True when a pointer moved to `next` would point at a slot too short for an entry: an option a receiver
 * rejects as malformed (a pointer that was not on an entry boundary to begin with). Such an option is left
 * as it came rather than made invalid.
 */
function leavesPartialSlot(next: number, len: number, entry: number): boolean {
  return next <= len && next + entry - 1 > len;
}

/** Milliseconds since midnight UT, the value of an IP timestamp (RFC 791). */
export function ipTimestamp(nowMs: number = Date.now()): number {
  return nowMs % 86_400_000;
}

/**
 * Records `addr` (4 bytes) in the record route and timestamp options of the header at `l3`, `times` times,
 * as a host does for a datagram it receives and again for the reply it sends (RFC 1122 3.2.2.6). A full
 * option sets its overflow count (timestamps) or is left as it is (record route). Returns true if anything
 * changed (the header checksum must then be recomputed).
 */
export function recordInOptions(buf: Uint8Array, l3: number, ihl: number, addr: Uint8Array, times: number, nowMs?: number): boolean {
  let changed = false;
  const ts = ipTimestamp(nowMs);
  forEachOption(buf, l3, ihl, (type, at, len) => {
    for (let k = 0; k < times; k++) {
      const ptr = buf[at + 2];
      if (type === OPT_RR) {
        if (ptr + 3 > len || leavesPartialSlot(ptr + 4, len, 4)) return;
        buf.set(addr, at + ptr - 1);
        buf[at + 2] = ptr + 4;
        changed = true;
      } else if (type === OPT_TS) {
        const flags = buf[at + 3] & 0x0f;
        const entry = timestampEntry(flags);
        if (entry === 0) return;
        if (ptr + entry - 1 > len) {
          // Full: count the overflow once, as the receiving host; the sender adds nothing (as Linux). The
          // count stops at 14: a reply carrying 15 would be dropped by the pinging host as malformed.
          const overflow = buf[at + 3] >> 4;
          if (k === 0 && flags !== 3 && overflow < 14) {
            buf[at + 3] = ((overflow + 1) << 4) | flags;
            changed = true;
          }
          return;
        }
        if (leavesPartialSlot(ptr + entry, len, entry)) return;
        let o = at + ptr - 1;
        if (flags === 3) {
          // Prespecified addresses: only the entry naming us gets a time.
          if (buf[o] !== addr[0] || buf[o + 1] !== addr[1] || buf[o + 2] !== addr[2] || buf[o + 3] !== addr[3]) return;
        }
        if (flags === 1) buf.set(addr, o);
        if (flags !== 0) o += 4;
        buf[o] = ts >>> 24;
        buf[o + 1] = (ts >>> 16) & 0xff;
        buf[o + 2] = (ts >>> 8) & 0xff;
        buf[o + 3] = ts & 0xff;
        buf[at + 2] = ptr + entry;
        changed = true;
      }
    }
  });
  return changed;
}

export const OPT_CIPSO = 134;

/** Room to build a reply's options in: at most 40 bytes; one for every reply, so nothing is allocated. */
const echoScratch = Buffer.alloc(40);

/**
 * Rewrites the options of the header at `l3` into the ones Linux puts in its reply (ip_options_echo, RFC
 * 1122 3.2.2.6): record route and timestamp (with our entries recorded by `recordInOptions` first), then
 * CIPSO, in that order; every other option (no-ops, router alert, stream id, security, unknown ones) is left
 * out, and the list is padded with End of Options to a multiple of 4. Writes them at `l3 + 20` and returns
 * their length; the caller moves what follows the header when the length changed.
 */
export function echoOptions(buf: Uint8Array, l3: number, ihl: number): number {
  let rr = -1;
  let ts = -1;
  let cipso = -1;
  forEachOption(buf, l3, ihl, (type, at) => {
    if (type === OPT_RR && rr < 0) rr = at;
    else if (type === OPT_TS && ts < 0) ts = at;
    else if (type === OPT_CIPSO && cipso < 0) cipso = at;
  });
  let n = 0;
  for (const at of [rr, ts, cipso]) {
    if (at < 0) continue;
    const len = buf[at + 1];
    echoScratch.set(buf.subarray(at, at + len), n);
    n += len;
  }
  while (n & 3) echoScratch[n++] = OPT_END;
  buf.set(echoScratch.subarray(0, n), l3 + 20);
  return n;
}
