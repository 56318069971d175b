#include "block.h"

#include <cerrno>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "sys_error.h"
#include "raw_syscalls.h"

namespace {
int OpenDevice(const std::string& path, int flags, const char* command) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw SysError{errno, "open", command, path, ""};
  return fd;
}
}  // namespace

uint64_t BlockGetSize(const std::string& path) {
  int fd = OpenDevice(path, O_RDONLY, "BLKGETSIZE64");
  uint64_t size = 0;
  int rc = ioctl(fd, BLKGETSIZE64, &size);
  int err = errno;
  close(fd);
  if (rc < 0) throw SysError{err, "ioctl", "BLKGETSIZE64", path, ""};
  return size;
}

void BlockDiscard(const std::string& path, uint64_t offset, uint64_t length) {
  int fd = OpenDevice(path, O_WRONLY, "BLKDISCARD");
  uint64_t range[2] = {offset, length};
  int rc = ioctl(fd, BLKDISCARD, range);
  int err = errno;
  close(fd);
  if (rc < 0) throw SysError{err, "ioctl", "BLKDISCARD", path, ""};
}

void BlockFlush(const std::string& path) {
  int fd = OpenDevice(path, O_RDONLY, "BLKFLSBUF");
  if (fsync(fd) < 0 || ioctl(fd, BLKFLSBUF, 0) < 0) {
    int err = errno;
    close(fd);
    throw SysError{err, "ioctl", "BLKFLSBUF", path, ""};
  }
  close(fd);
}

void DeviceNumber(const std::string& path, uint32_t* major_, uint32_t* minor_) {
  struct stat st;
  if (SysStat(path.c_str(), &st) < 0) throw SysError{errno, "stat", "", path, ""};
  if (!S_ISBLK(st.st_mode) && !S_ISCHR(st.st_mode)) throw SysError{ENOTBLK, "stat", "", path, "not a device node"};
  *major_ = major(st.st_rdev);
  *minor_ = minor(st.st_rdev);
}

// mknod first: the usual case (no node yet) costs one syscall, as it does for dmsetup without udev.
bool EnsureBlockNode(const std::string& path, uint32_t maj, uint32_t min, uint32_t mode) {
  dev_t want = makedev(maj, min);
  mode_t type = S_IFBLK | (mode & 07777);
  if (SysMknod(path.c_str(), type, want) == 0) return true;
  if (errno != EEXIST) throw SysError{errno, "mknod", "", path, ""};
  struct stat st;
  if (SysLstat(path.c_str(), &st) < 0) throw SysError{errno, "lstat", "", path, ""};
  if (S_ISBLK(st.st_mode) && st.st_rdev == want) return false;
  if (unlink(path.c_str()) < 0) throw SysError{errno, "unlink", "", path, ""};
  if (SysMknod(path.c_str(), type, want) < 0 && errno != EEXIST)  // EEXIST: udev made it meanwhile
    throw SysError{errno, "mknod", "", path, ""};
  return true;
}

void RemoveNode(const std::string& path) {
  if (unlink(path.c_str()) < 0 && errno != ENOENT) throw SysError{errno, "unlink", "", path, ""};
}
