/*
 * echo-ref: the reference ICMP echo responder for `npm run bench`.
 *
 * It is deliberately the simplest fast responder there is, so that the bench can say how far tunpipe is from
 * "a C program in a blocking read()/write() loop" on the same machine and the same load:
 *
 *   echo-ref DEVNAME
 *
 * opens /dev/net/tun, attaches to (or creates) the TUN device DEVNAME with IFF_TUN | IFF_NO_PI, then reads one
 * packet per read(); every IPv4 ICMP echo request (type 8, code 0, unfragmented) is turned in place into its
 * echo reply (addresses swapped, type 0, TTL 64, both checksums updated incrementally per RFC 1624), and every
 * IPv6 ICMPv6 echo request without extension headers (next header 58, type 128) into its reply (addresses
 * swapped, type 129, hop limit 64, the ICMPv6 checksum updated incrementally: the pseudo-header keeps its
 * sum), and written back with one write(). Everything else is ignored. It prints nothing per packet.
 * (Requests are not verified: the incremental update keeps a valid checksum valid, and a corrupt request gets
 * a reply that is corrupt too, which the sender's kernel drops.)
 *
 * It does NOT configure the device (no address, no link up): the bench harness does that with `ip` inside its
 * network namespace once the device exists, so the responder measures only packet I/O.
 *
 * SIGTERM/SIGINT make it exit with status 0. The handlers are installed with sigaction() WITHOUT SA_RESTART so
 * that a read() blocked on an idle device returns EINTR and the loop ends at once (signal() in glibc would set
 * SA_RESTART and the process would stay parked until the next packet).
 *
 * Build: cc -O2 -o echo-ref bench/echo-ref.c
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_stop_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static int install_stop_handlers(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: a blocked read() must return EINTR */
  if (sigaction(SIGTERM, &sa, NULL) < 0) return -1;
  if (sigaction(SIGINT, &sa, NULL) < 0) return -1;
  return 0;
}

static int open_tun(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    perror("echo-ref: open /dev/net/tun");
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    perror("echo-ref: TUNSETIFF");
    close(fd);
    return -1;
  }
  return fd;
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

/*
 * RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), in one's complement arithmetic, for one 16-bit word of the covered
 * data changing from m to m'. Two folds are enough: the sum of three 16-bit values is < 3 * 2^16, so after the
 * first fold it is at most 0xffff + 2, and the second fold absorbs that last carry (end-around carry).
 */
static uint16_t csum_replace16(uint16_t check, uint16_t old_word, uint16_t new_word) {
  uint32_t sum = (uint32_t)(uint16_t)~check + (uint32_t)(uint16_t)~old_word + (uint32_t)new_word;
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

/*
 * The one case where eqn. 3 gives a checksum that does not verify: when the updated data sums to zero, eqn. 3
 * yields 0x0000 (the sum taken as -0, 0xffff), which is right for any data except all zeros, whose sum is +0 and
 * whose checksum must be 0xffff. The IP header can never be all zeros (version byte), but an echo reply with
 * identifier, sequence and payload all zero can. The check runs only when the result is 0 (1 packet in 65536).
 */
static int icmp_is_all_zero(const uint8_t *icmp, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (i != 2 && i != 3 && icmp[i] != 0) return 0; /* bytes 2-3: the checksum field itself */
  return 1;
}

/*
 * Turns the IPv4 ICMP echo request in pkt[0..len) into its reply in place. Returns 1 if pkt now holds a reply
 * to send, 0 if the packet is not something we answer.
 */
static int make_echo_reply(uint8_t *pkt, size_t len) {
  if (len < 20 || (pkt[0] >> 4) != 4) return 0;
  size_t ihl = (size_t)(pkt[0] & 0x0f) * 4;
  size_t total = get16(pkt + 2);
  if (ihl < 20 || total < ihl + 8 || total > len) return 0;
  if (pkt[9] != 1) return 0;                 /* not ICMP */
  if ((get16(pkt + 6) & 0x3fff) != 0) return 0; /* a fragment: the ICMP checksum spans the whole datagram */
  uint8_t *icmp = pkt + ihl;
  if (icmp[0] != 8 || icmp[1] != 0) return 0; /* not an echo request */

  /* Swapping source and destination permutes 16-bit words of the header: its checksum is unchanged. */
  uint8_t tmp[4];
  memcpy(tmp, pkt + 12, 4);
  memcpy(pkt + 12, pkt + 16, 4);
  memcpy(pkt + 16, tmp, 4);

  /* TTL shares its 16-bit word with the protocol byte. */
  uint16_t old_ttl_word = get16(pkt + 8);
  pkt[8] = 64;
  put16(pkt + 10, csum_replace16(get16(pkt + 10), old_ttl_word, get16(pkt + 8)));

  /* ICMP type shares its word with the code byte. */
  uint16_t old_type_word = get16(icmp);
  icmp[0] = 0;
  uint16_t icmp_check = csum_replace16(get16(icmp + 2), old_type_word, get16(icmp));
  if (icmp_check == 0 && icmp_is_all_zero(icmp, total - ihl)) icmp_check = 0xffff;
  put16(icmp + 2, icmp_check);
  return 1;
}

/*
 * The IPv6 request in pkt[0..len) (no extension headers, as ping -6 sends them) turned into its reply in
 * place. The ICMPv6 checksum covers the pseudo-header, whose sum the swap leaves unchanged, so only the type
 * word changes; the covered data always includes the addresses, so the all-zero corner cannot happen.
 */
static int make_echo_reply6(uint8_t *pkt, size_t len) {
  if (len < 48 || (pkt[0] >> 4) != 6 || pkt[6] != 58) return 0;
  if ((size_t)get16(pkt + 4) + 40 > len) return 0;
  uint8_t *icmp = pkt + 40;
  if (icmp[0] != 128) return 0;
  uint8_t tmp[16];
  memcpy(tmp, pkt + 8, 16);
  memcpy(pkt + 8, pkt + 24, 16);
  memcpy(pkt + 24, tmp, 16);
  pkt[7] = 64;
  uint16_t old_type_word = get16(icmp);
  icmp[0] = 129;
  put16(icmp + 2, csum_replace16(get16(icmp + 2), old_type_word, get16(icmp)));
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 2 || strlen(argv[1]) == 0 || strlen(argv[1]) >= IFNAMSIZ) {
    fprintf(stderr, "usage: echo-ref DEVNAME   (DEVNAME: 1..%d characters)\n", IFNAMSIZ - 1);
    return 2;
  }
  if (install_stop_handlers() < 0) {
    perror("echo-ref: sigaction");
    return 1;
  }
  int fd = open_tun(argv[1]);
  if (fd < 0) return 1;

  uint8_t buf[65536];
  while (!stop_requested) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue; /* the loop condition decides whether to stop */
      perror("echo-ref: read");
      break;
    }
    /* A failed write is a dropped reply (e.g. EIO while the link is down); not worth stopping for. */
    if (make_echo_reply(buf, (size_t)n) || make_echo_reply6(buf, (size_t)n)) (void)!write(fd, buf, (size_t)n);
  }
  close(fd);
  return stop_requested ? 0 : 1;
}
