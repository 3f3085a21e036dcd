/*
 * without-io-uring PROGRAM [ARGS...]: runs PROGRAM where io_uring_setup(2) fails with ENOSYS, as on a kernel
 * without io_uring. A seccomp filter of this process and its children only (no_new_privs, inherited across
 * exec): nothing host-wide changes, unlike the kernel.io_uring_disabled sysctl. Built by the tests that need it
 * (test/device/no-io-uring.test.ts) with `cc -O2`.
 */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define THIS_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define THIS_ARCH AUDIT_ARCH_AARCH64
#endif

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: without-io-uring PROGRAM [ARGS...]\n");
    return 2;
  }
  struct sock_filter filter[] = {
#ifdef THIS_ARCH
    /* Another ABI's numbers mean other calls: let them through untouched. */
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, THIS_ARCH, 1, 0),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
#endif
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = { .len = sizeof filter / sizeof filter[0], .filter = filter };
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
    perror("without-io-uring: seccomp");
    return 1;
  }
  execvp(argv[1], argv + 1);
  perror("without-io-uring: exec");
  return 127;
}
