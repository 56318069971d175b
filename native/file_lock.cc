#include "file_lock.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "sys_error.h"

int LockFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw SysError{errno, "open", "flock", path, ""};
  if (flock(fd, LOCK_EX) < 0) {
    int err = errno;
    close(fd);
    throw SysError{err, "flock", "flock", path, ""};
  }
  return fd;
}

int TryLockFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw SysError{errno, "open", "flock", path, ""};
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) return -1;
    throw SysError{err, "flock", "flock", path, ""};
  }
  return fd;
}
