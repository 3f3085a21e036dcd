/**
 * koffi for the device layer, required (../lazy-require.ts) rather than imported: in the CLI's bundle, an
 * import would load koffi, a native addon, on every run; this way only a run on a device does.
 */
import { lazyRequire } from '../lazy-require.js';

export const koffi = lazyRequire('koffi') as typeof import('koffi');
