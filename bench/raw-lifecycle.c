/* The limit for the lifecycle benchmark: the same DM ioctls as the library, from C, with nothing else.
 * usage: raw-lifecycle <pool-name> <pool-major:minor> <count> <first-id> <sectors> [nodes]
 * Per volume: create_thin, CREATE, LOAD (thin), RESUME, then REMOVE, delete. With nodes=1 it also does what
 * the library does without udev (and dmsetup with DM_DISABLE_UDEV): mknod /dev/mapper/<name> after RESUME,
 * unlink it after REMOVE. Prints elapsed nanoseconds. */
#include <fcntl.h>
#include <linux/dm-ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

static int ctl;
static char buf[16384] __attribute__((aligned(8)));

static struct dm_ioctl *hdr(const char *name, unsigned minor) {
  memset(buf, 0, sizeof(struct dm_ioctl) + 512);
  struct dm_ioctl *io = (struct dm_ioctl *)buf;
  io->version[0] = 4; io->version[1] = minor;
  io->data_size = sizeof(buf); io->data_start = sizeof(struct dm_ioctl);
  strncpy(io->name, name, sizeof(io->name) - 1);
  return io;
}

static void run(unsigned long req, struct dm_ioctl *io, const char *what) {
  if (ioctl(ctl, req, io) < 0) { perror(what); exit(1); }
}

static void message(const char *pool, const char *text) {
  struct dm_ioctl *io = hdr(pool, 2);
  struct dm_target_msg *m = (struct dm_target_msg *)(buf + io->data_start);
  m->sector = 0;
  strcpy(m->message, text);
  run(DM_TARGET_MSG, io, text);
}

int main(int argc, char **argv) {
  if (argc != 6 && argc != 7) { fprintf(stderr, "usage: %s pool maj:min count first-id sectors [nodes]\n", argv[0]); return 2; }
  int nodes = argc == 7 && atoi(argv[6]) == 1;
  const char *pool = argv[1], *pooldev = argv[2];
  int count = atoi(argv[3]), first = atoi(argv[4]);
  unsigned long long sectors = strtoull(argv[5], 0, 10);
  ctl = open("/dev/mapper/control", O_RDWR);
  if (ctl < 0) { perror("open control"); return 1; }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  char text[64], name[64];
  for (int i = 0; i < count; i++) {
    int id = first + i;
    snprintf(text, sizeof text, "create_thin %d", id);
    message(pool, text);
    snprintf(name, sizeof name, "rawbench-%d", id);
    run(DM_DEV_CREATE, hdr(name, 0), "create");
    struct dm_ioctl *io = hdr(name, 0);
    io->target_count = 1;
    struct dm_target_spec *spec = (struct dm_target_spec *)(buf + io->data_start);
    spec->sector_start = 0; spec->length = sectors;
    strcpy(spec->target_type, "thin");
    char *params = (char *)(spec + 1);
    sprintf(params, "%s %d", pooldev, id);
    spec->next = (sizeof(*spec) + strlen(params) + 1 + 7) & ~7u;
    run(DM_TABLE_LOAD, io, "load");
    io = hdr(name, 0);
    run(DM_DEV_SUSPEND, io, "resume");
    char node[128];
    snprintf(node, sizeof node, "/dev/mapper/%s", name);
    if (nodes && mknod(node, S_IFBLK | 0600, makedev((unsigned)(io->dev >> 8) & 0xfff, (unsigned)(io->dev & 0xff) | (unsigned)((io->dev >> 12) & ~0xffull)))) { perror("mknod"); exit(1); }
    run(DM_DEV_REMOVE, hdr(name, 0), "remove");
    if (nodes && unlink(node)) { perror("unlink"); exit(1); }
    snprintf(text, sizeof text, "delete %d", id);
    message(pool, text);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
  return 0;
}
