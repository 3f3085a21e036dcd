/** The reasons the engine itself counts drops under (a stage's own reasons are its own). */
export const ENGINE_DROP = {
  filtered: 'filtered',
  queueFull: 'queue full: the stage is slower than the traffic',
  endOfBranch: 'end of branch (no sink named)',
  drop: "dropped by 'drop'",
  stopped: 'stopped before the stage got to it',
} as const;
