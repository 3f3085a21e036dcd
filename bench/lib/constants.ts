/**
 * Names, addresses and paths shared by the bench modules.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The one TUN device every responder opens, inside the bench's namespace (never in the host's). */
export const DEV = 'tpb0';
/** RFC 2544's benchmarking range, so that nothing the bench does can collide with a real network. */
export const LOCAL_ADDR = '198.18.0.1';
export const LOCAL_CIDR = `${LOCAL_ADDR}/24`;
/** The only address the bench pings: routed through the device, so the responder answers for it. */
export const PEER_ADDR = '198.18.0.2';

/** This file runs as dist/bench/lib/constants.js, so the repository root is three levels up. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const REF_SOURCE = path.join(REPO_ROOT, 'bench', 'echo-ref.c');
export const OUT_JSON = path.join(REPO_ROOT, 'bench', 'out', 'last.json');

/**
 * Hard budget for the bench itself (the echo blocks, soak, offline and forwarding sections); the build and
 * npm come on top. Sections that would not fit are skipped and reported.
 */
export const TIME_BUDGET_S = 300;

/** Seconds kept for the forwarding section when it runs (lib/forward.ts). */
export const FORWARD_BUDGET_S = 60;
