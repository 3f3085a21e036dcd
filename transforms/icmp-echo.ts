/**
 * icmp-echo: answers ICMP echo requests. A compound stage, written in the pipeline language and flattened
 * before running (its counters show under icmp-echo/filter-icmp-echo, ...):
 *
 *     reassemble | filter-icmp-echo | swap-addrs | to-reply
 *
 * Follow it with `checksum`. Everything that is not an echo request to answer is dropped (see
 * filter-icmp-echo for the reasons); to let other traffic through, use the parts instead.
 */
import { defineStage } from '../src/pipeline/stage.js';

const icmpEchoStage = defineStage({
  name: 'icmp-echo',
  recordsChanges: true,
  summary: 'answer pings: reassemble | filter-icmp-echo | swap-addrs | to-reply (then checksum)',
  help: 'Fragmented requests (ping -s 3000) are reassembled and answered; add `fragment mtu=N` after checksum\nto send the reply in fragments that fit the MTU.',
  args: [],
  expand: 'reassemble | filter-icmp-echo | swap-addrs | to-reply',
});
export default icmpEchoStage;
