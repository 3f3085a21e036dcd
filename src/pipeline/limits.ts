/**
 * Bounds that keep a long run's memory flat whatever the stages say: how many distinct drop reasons and
 * warnings are kept per stage, and the largest packet a tee copies into its reused buffer.
 */

/** The largest packet a source hands in (a 64 KiB datagram behind a link header): a tee's reused copy. */
export const MAX_PACKET_COPY = 65536 + 64;

export class StageCounterLimits {
  /** Distinct drop reasons kept per stage; further ones are counted under OTHER_REASONS. */
  readonly reasons = 32;
  /** Distinct warnings printed per stage; further ones are not printed. */
  static readonly WARNINGS = 32;
}
