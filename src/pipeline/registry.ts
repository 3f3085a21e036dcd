/** The built-in stages, one per file in transforms/. `tunpipe --list` prints them from their declarations. */
import type { StageDefinition } from './stage.js';
import parse from '../../transforms/parse.js';
import filterIcmpEcho from '../../transforms/filter-icmp-echo.js';
import swapAddrs from '../../transforms/swap-addrs.js';
import neighbor from '../../transforms/neighbor.js';
import toReply from '../../transforms/to-reply.js';
import icmpEcho from '../../transforms/icmp-echo.js';
import checksum from '../../transforms/checksum.js';
import pcap from '../../transforms/pcap.js';
import reassemble from '../../transforms/reassemble.js';
import fragment from '../../transforms/fragment.js';
import delay from '../../transforms/delay.js';
import loss from '../../transforms/loss.js';
import rate from '../../transforms/rate.js';
import duplicate from '../../transforms/duplicate.js';
import reorder from '../../transforms/reorder.js';
import corrupt from '../../transforms/corrupt.js';
import print from '../../transforms/print.js';
import filter from '../../transforms/filter.js';
import segment from '../../transforms/segment.js';

const BUILTINS: StageDefinition[] = [parse, icmpEcho, reassemble, filterIcmpEcho, swapAddrs, toReply, checksum, fragment, filter, pcap, print, delay, loss, rate, duplicate, reorder, corrupt, neighbor, segment];

/** Every built-in stage, in the order `--list` shows them. */
export function builtinStages(): readonly StageDefinition[] {
  return BUILTINS;
}

export function findStage(name: string): StageDefinition | undefined {
  return BUILTINS.find((d) => d.name === name);
}
