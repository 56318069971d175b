// The kernel's uapi headers for device-mapper and loop, with what older headers lack defined here: a build on
// a system whose headers predate a command still compiles, and the running kernel decides (an old kernel
// answers ENOTTY or EINVAL, which the callers handle). Values from the kernel's include/uapi/linux.
#pragma once

#include <linux/dm-ioctl.h>
#include <linux/loop.h>
#include <linux/types.h>

// dm-ioctl.h numbers its commands in an enum; a header's interface version says which it has.
#if DM_VERSION_MINOR < 36
#define DM_DEV_ARM_POLL_CMD 16
#define DM_DEV_ARM_POLL _IOWR(DM_IOCTL, DM_DEV_ARM_POLL_CMD, struct dm_ioctl)
#endif
#if DM_VERSION_MINOR < 41
#define DM_GET_TARGET_VERSION_CMD 17
#define DM_GET_TARGET_VERSION _IOWR(DM_IOCTL, DM_GET_TARGET_VERSION_CMD, struct dm_ioctl)
#endif
// Flags a header may predate (each a macro).
#ifndef DM_SECURE_DATA_FLAG
#define DM_SECURE_DATA_FLAG (1 << 15)
#endif
#ifndef DM_DATA_OUT_FLAG
#define DM_DATA_OUT_FLAG (1 << 16)
#endif
#ifndef DM_DEFERRED_REMOVE
#define DM_DEFERRED_REMOVE (1 << 17)
#endif
#ifndef DM_INTERNAL_SUSPEND_FLAG
#define DM_INTERNAL_SUSPEND_FLAG (1 << 18)
#endif
#ifndef DM_NAME_LIST_FLAG_HAS_UUID
#define DM_NAME_LIST_FLAG_HAS_UUID 1
#define DM_NAME_LIST_FLAG_DOESNT_HAVE_UUID 2
#endif

#ifndef LOOP_SET_DIRECT_IO
#define LOOP_SET_DIRECT_IO 0x4C08
#define LO_FLAGS_DIRECT_IO 16  // an enum member in the headers that have it, which came with LOOP_SET_DIRECT_IO
#endif
#ifndef LOOP_SET_BLOCK_SIZE
#define LOOP_SET_BLOCK_SIZE 0x4C09
#endif
#if !defined(LOOP_CTL_GET_FREE) || !defined(LOOP_SET_CAPACITY)
#error "linux/loop.h is older than Linux 3.1"
#endif
#ifndef LOOP_CONFIGURE
#define LOOP_CONFIGURE 0x4C0A
struct loop_config {
  __u32 fd;
  __u32 block_size;
  struct loop_info64 info;
  __u64 __reserved[8];
};
#endif
