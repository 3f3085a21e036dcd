/*
 * The bench's reference forwarder: what a plain C program does to join two TUN devices. It attaches to two
 * persistent TUN devices, each in its own network namespace (NS_A DEV_A NS_B DEV_B), then waits in poll()
 * on both fds and moves every packet that arrives on one to the other with one read() and one write().
 * With a fifth argument `offload` it opens them with IFF_VNET_HDR and TUNSETOFFLOAD (checksum, TSO4,
 * TSO6): each read is then a virtio_net_hdr and a TCP super-packet up to 64 KiB, written whole.
 * Ends on SIGTERM or SIGINT. Compiled and run by bench/lib/forward.ts; the bench only, never the product.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

/* Opens DEV in network namespace NS: the calling thread joins NS for TUNSETIFF, then comes back. */
static int offload;

static int open_in(const char *ns, const char *dev) {
  char path[256];
  snprintf(path, sizeof path, "/run/netns/%s", ns);
  int home = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (home < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
    perror(path);
    exit(1);
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0);
  strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0) {
    perror(dev);
    exit(1);
  }
  if (offload && ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) {
    perror("TUNSETOFFLOAD");
    exit(1);
  }
  if (setns(home, CLONE_NEWNET) < 0) {
    perror("setns back");
    exit(1);
  }
  close(home);
  close(target);
  return fd;
}

int main(int argc, char **argv) {
  if (argc != 5 && !(argc == 6 && strcmp(argv[5], "offload") == 0)) {
    fprintf(stderr, "usage: %s NS_A DEV_A NS_B DEV_B [offload]\n", argv[0]);
    return 2;
  }
  offload = argc == 6;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  int fds[2] = {open_in(argv[1], argv[2]), open_in(argv[3], argv[4])};
  fprintf(stderr, "fwd-ref: forwarding %s <-> %s\n", argv[2], argv[4]);
  static unsigned char buf[65536 + 256];
  struct pollfd p[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
  while (!stop) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      perror("poll");
      return 1;
    }
    for (int i = 0; i < 2; i++) {
      if (!(p[i].revents & POLLIN)) continue;
      for (;;) {
        ssize_t n = read(fds[i], buf, sizeof buf);
        if (n <= 0) break;
        if (write(fds[1 - i], buf, (size_t)n) < 0 && errno != EIO) {
          /* a refused write is a drop, as in tunpipe */
        }
      }
    }
  }
  return 0;
}
