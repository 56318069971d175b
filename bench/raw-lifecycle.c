/* The limit for the lifecycle benchmark: the same DM ioctls as the library, from C, with nothing else.
 * usage: raw-lifecycle <pool-name> <pool-major:minor> <count> <first-id> <sectors> [nodes]
 * Per volume: create_thin, CREATE, LOAD (thin), RESUME, then REMOVE, delete (raw-steps.h). With nodes=1 it
 * also does what the library does without udev (and dmsetup with DM_DISABLE_UDEV): mknod /dev/mapper/<name>
 * after RESUME, unlink it after REMOVE. Prints elapsed nanoseconds. */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>
#include "raw-steps.h"

int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) { fprintf(stderr, "usage: %s pool maj:min count first-id sectors [nodes]\n", argv[0]); return 2; }
  int nodes = argc == 7 && atoi(argv[6]) == 1;
  struct raw_ctx c = { .pool = argv[1], .pooldev = argv[2], .prefix = "rawbench-", .sectors = strtoull(argv[5], 0, 10) };
  int count = atoi(argv[3]), first = atoi(argv[4]);
  c.ctl = open("/dev/mapper/control", O_RDWR);
  if (c.ctl < 0) { perror("open control"); return 1; }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  char node[128], name[64];
  for (int i = 0; i < count; i++) {
    int id = first + i;
    for (int k = 0; k < RAW_STEPS; k++) {
      int rc = raw_step(&c, k, id);
      if (rc < 0) { errno = -rc; perror(k == RAW_CREATE_THIN || k == RAW_DELETE ? "message" : "ioctl"); return 1; }
      if (!nodes || (k != RAW_RESUME && k != RAW_REMOVE)) continue;
      raw_name(&c, id, name, sizeof name);
      snprintf(node, sizeof node, "/dev/mapper/%s", name);
      if (k == RAW_RESUME) {
        unsigned long long dev = ((struct dm_ioctl *)raw_buf)->dev;
        if (mknod(node, S_IFBLK | 0600, makedev((unsigned)(dev >> 8) & 0xfff, (unsigned)(dev & 0xff) | (unsigned)((dev >> 12) & ~0xffull)))) { perror("mknod"); return 1; }
      } else if (unlink(node)) { perror("unlink"); return 1; }
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
  return 0;
}
