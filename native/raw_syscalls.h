// stat, lstat, fstat and mknod as raw system calls. glibc before 2.33 has these as small wrappers that every
// program links in statically (libc_nonshared); as the prebuilds link them for glibc 2.17, a failure comes back
// with errno left unset, so ENOENT or EEXIST could not be told from any other error. syscall() sets errno in
// the running libc, whatever it is. The struct stat of x86_64 and arm64 is the kernel's own.
#pragma once
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

inline int SysStat(const char* path, struct stat* st) {
  return static_cast<int>(syscall(SYS_newfstatat, AT_FDCWD, path, st, 0));
}
inline int SysLstat(const char* path, struct stat* st) {
  return static_cast<int>(syscall(SYS_newfstatat, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW));
}
inline int SysFstat(int fd, struct stat* st) {
  return static_cast<int>(syscall(SYS_fstat, fd, st));
}
inline int SysMknod(const char* path, mode_t mode, dev_t dev) {
  return static_cast<int>(syscall(SYS_mknodat, AT_FDCWD, path, mode, dev));
}
