/**
 * The I/O path a tunpipe process used, as its exit line reports it (`device tpb0: read N, written N, write
 * errors N (io_uring)`, or `(poll)`, or `(poll (io_uring: why not))` after a fall-back), and how a table labels
 * it. The bench keeps it per process, so that no figure measured on the poll path is reported as io_uring's.
 */

/** The text in the exit line's last parentheses, or undefined when the process printed no device line. */
export function ioPathFromOutput(output: string): string | undefined {
  const m = /^device \S+: read \d+, written \d+, write errors \d+ \((.*)\)\s*$/m.exec(output);
  return m ? m[1] : undefined;
}

/** A fall-back: the worker wanted io_uring and could not have it (the exit line then gives the reason). */
export function fellBack(io: string | undefined): boolean {
  return io !== undefined && /^poll \(io_uring: /.test(io);
}

/** The label a table shows next to a responder's name: what path its figures were measured on. */
export function ioLabel(io: string | undefined): string {
  if (io === undefined) return 'I/O path not reported';
  if (fellBack(io)) return `poll, fell back from io_uring: ${io.slice('poll (io_uring: '.length, -1)}`;
  return io;
}
