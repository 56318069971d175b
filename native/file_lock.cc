#include "file_lock.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "sys_error.h"

namespace {
// open + flock(LOCK_EX); without waiting: -1 when another process holds the lock.
int Lock(const std::string& path, bool wait) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw SysError{errno, "open", "flock", path, ""};
  if (flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) < 0) {
    int err = errno;
    close(fd);
    if (!wait && err == EWOULDBLOCK) return -1;
    throw SysError{err, "flock", "flock", path, ""};
  }
  return fd;
}
}  // namespace

int LockFile(const std::string& path) { return Lock(path, true); }

int TryLockFile(const std::string& path) { return Lock(path, false); }
