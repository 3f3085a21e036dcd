/**
 * The pcapng file format (IETF draft-ietf-opsawg-pcapng): a file is a sequence of blocks, each
 * `type, total length, body, total length` (lengths a multiple of 4), grouped into sections that each begin
 * with a section header block (SHB) whose byte-order magic tells the byte order of the section. Interfaces
 * are described by interface description blocks (IDB), numbered from 0 in each section; packets are
 * enhanced packet blocks (EPB) that name their interface. Options are `code, length, value` padded to 4.
 */

export const BLOCK_SHB = 0x0a0d0d0a;
export const BLOCK_IDB = 1;
export const BLOCK_PB = 2; // obsolete packet block, still read
export const BLOCK_SPB = 3;
export const BLOCK_EPB = 6;
export const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

export const OPT_ENDOFOPT = 0;
export const OPT_COMMENT = 1;
export const SHB_USERAPPL = 4;
export const IF_NAME = 2;
export const IF_TSRESOL = 9;
export const IF_TSOFFSET = 14;
export const EPB_FLAGS = 2;

/** epb_flags bits 0-1: the packet's direction. */
export const DIRECTION_INBOUND = 1;
export const DIRECTION_OUTBOUND = 2;

/** Bytes of an EPB around its data when it carries epb_flags: header 28, flags option 8, end of options 4, trailer 4. */
export const EPB_OVERHEAD = 44;

/** Blocks longer than this are taken as corruption rather than allocated. */
export const MAX_BLOCK = (1 << 26) + 4096;

/** `n` rounded up to a multiple of 4. */
export function pad4(n: number): number {
  return (n + 3) & ~3;
}
