/* The thin lifecycle as raw DM ioctls, one step at a time, with nothing else: the limit the library is
 * measured against. Shared by raw-lifecycle.c (a C program) and floor/floor.cc (the same steps, each called
 * from JavaScript), so both do exactly the same kernel work. C and C++. */
#ifndef DEVMAPPER_BENCH_RAW_STEPS_H
#define DEVMAPPER_BENCH_RAW_STEPS_H
#include <errno.h>
#include <linux/dm-ioctl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

enum { RAW_CREATE_THIN, RAW_CREATE, RAW_LOAD, RAW_RESUME, RAW_REMOVE, RAW_DELETE, RAW_STEPS };

struct raw_ctx {
  int ctl;                   /* /dev/mapper/control */
  const char *pool, *pooldev, *prefix;  /* pool name, its major:minor, volume name prefix */
  unsigned long long sectors;
};

/* One buffer: one step at a time. */
static char raw_buf[16384] __attribute__((aligned(8)));

static struct dm_ioctl *raw_hdr(const char *name, unsigned minor) {
  memset(raw_buf, 0, sizeof(struct dm_ioctl) + 512);
  struct dm_ioctl *io = (struct dm_ioctl *)raw_buf;
  io->version[0] = 4; io->version[1] = minor;
  io->data_size = sizeof(raw_buf); io->data_start = sizeof(struct dm_ioctl);
  strncpy(io->name, name, sizeof(io->name) - 1);
  return io;
}

static int raw_ioctl(int ctl, unsigned long req, struct dm_ioctl *io) {
  return ioctl(ctl, req, io) < 0 ? -errno : 0;
}

static int raw_message(int ctl, const char *pool, const char *text) {
  struct dm_ioctl *io = raw_hdr(pool, 2);
  struct dm_target_msg *m = (struct dm_target_msg *)(raw_buf + io->data_start);
  m->sector = 0;
  strcpy(m->message, text);
  return raw_ioctl(ctl, DM_TARGET_MSG, io);
}

static void raw_name(const struct raw_ctx *c, int id, char *name, size_t n) { snprintf(name, n, "%s%d", c->prefix, id); }

/* Step k of volume `id`'s lifecycle: create_thin, CREATE, LOAD (thin), RESUME, REMOVE, delete. 0 or -errno.
 * After RAW_RESUME, ((struct dm_ioctl *)raw_buf)->dev is the new device's number. */
static int raw_step(const struct raw_ctx *c, int k, int id) {
  char text[64], name[64];
  raw_name(c, id, name, sizeof name);
  switch (k) {
    case RAW_CREATE_THIN: snprintf(text, sizeof text, "create_thin %d", id); return raw_message(c->ctl, c->pool, text);
    case RAW_CREATE: return raw_ioctl(c->ctl, DM_DEV_CREATE, raw_hdr(name, 0));
    case RAW_LOAD: {
      struct dm_ioctl *io = raw_hdr(name, 0);
      io->target_count = 1;
      struct dm_target_spec *spec = (struct dm_target_spec *)(raw_buf + io->data_start);
      spec->sector_start = 0; spec->length = c->sectors;
      strcpy(spec->target_type, "thin");
      char *params = (char *)(spec + 1);
      sprintf(params, "%s %d", c->pooldev, id);
      spec->next = (sizeof(*spec) + strlen(params) + 1 + 7) & ~7u;
      return raw_ioctl(c->ctl, DM_TABLE_LOAD, io);
    }
    case RAW_RESUME: return raw_ioctl(c->ctl, DM_DEV_SUSPEND, raw_hdr(name, 0));
    case RAW_REMOVE: return raw_ioctl(c->ctl, DM_DEV_REMOVE, raw_hdr(name, 0));
    case RAW_DELETE: snprintf(text, sizeof text, "delete %d", id); return raw_message(c->ctl, c->pool, text);
  }
  return -EINVAL;
}
#endif
