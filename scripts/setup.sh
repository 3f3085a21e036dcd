#!/usr/bin/env bash
# Installs what tunpipe and its tests need on a fresh Debian machine, then the npm packages, then builds.
# Debian packages: iproute2 (ip netns, ip tuntap), iputils-ping (the tests' client), tcpdump and tshark
# (readers of our captures), iperf3 and iputils-arping (peers for the wire and TAP tests), libpcap0.8 (the
# filter compiler, loaded through koffi; -dev for the benchmark's C reference), util-linux (unshare, setpriv),
# a C compiler for the benchmark's references.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v tshark >/dev/null || need+=(tshark)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v arping >/dev/null || need+=(iputils-arping)
command -v ethtool >/dev/null || need+=(ethtool)
[ -e /usr/include/pcap/pcap.h ] || need+=(libpcap0.8-dev)
ldconfig -p 2>/dev/null | grep -q 'libpcap.so.0.8 ' || need+=(libpcap0.8)
command -v setpriv >/dev/null || need+=(util-linux)
command -v cc >/dev/null || need+=(gcc libc6-dev)
command -v nstat >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing ${need[*]}; run as root (sudo $0) or install them with apt-get" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -e /dev/net/tun ] || modprobe tun 2>/dev/null || true

npm ci --no-audit --no-fund
npm run build
