#!/usr/bin/env bash
# The quick start: set up, then run tunpipe's ICMP echo responder on a new device tun0 with 198.18.0.1/24
# inside a network namespace of its own (nothing on the host is touched), ping the peer address 198.18.0.2
# from the same namespace, show the kernel's verdict on the replies, stop tunpipe (it prints its counters)
# and remove the namespace. With --stay, the responder keeps running until Ctrl-C, for your own pings:
#   sudo ip netns exec tunpipe-demo ping 198.18.0.2
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  # A namespace and a TUN device need root: ask sudo for it where there is one.
  if command -v sudo >/dev/null; then exec sudo "$0" "$@"; fi
  echo "quickstart: needs root to create a network namespace and a TUN device; run it as root" >&2
  exit 1
fi
stay=false
[ "${1:-}" = "--stay" ] && stay=true

scripts/setup.sh

ns=tunpipe-demo
ip netns del "$ns" 2>/dev/null || true
pid=
log=$(mktemp)
cleanup() {
  [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up

echo "+ tunpipe --dev tun0 --addr 198.18.0.1/24 'parse | icmp-echo | checksum'   (in namespace $ns)"
# Its messages go to the terminal and to a file, to see when it says it is reading.
ip netns exec "$ns" node dist/bin/tunpipe.js --dev tun0 --addr 198.18.0.1/24 'parse | icmp-echo | checksum' 2> >(tee "$log" >&2) &
pid=$!
for _ in $(seq 100); do grep -q 'reading' "$log" 2>/dev/null && break; sleep 0.05; done

echo "+ ping -c 5 198.18.0.2   (the peer address: the pipeline answers it, not the kernel)"
ip netns exec "$ns" ping -c 5 -i 0.2 -w 5 198.18.0.2
echo "+ nstat: the kernel's count of valid replies and of replies with bad checksums"
ip netns exec "$ns" nstat -asz IcmpInEchoReps IcmpInCsumErrors | tail -n 2

if $stay; then
  echo "tunpipe keeps answering; from another shell: sudo ip netns exec $ns ping 198.18.0.2   (Ctrl-C here to stop)"
  wait "$pid" || true
  pid=
fi
