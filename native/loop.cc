#include "loop.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include "uapi.h"
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "sys_error.h"

namespace {

constexpr int kMaxAttempts = 64;  // util-linux's bound on GET_FREE races

struct Fd {
  int fd;
  explicit Fd(int f) : fd(f) {}
  ~Fd() { if (fd >= 0) close(fd); }
  int Release() { int f = fd; fd = -1; return f; }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

int OpenOrThrow(const std::string& path, int flags, const char* command) {
  int fd = open(path.c_str(), flags | O_CLOEXEC);
  if (fd < 0) throw SysError{errno, "open", command, path, ""};
  return fd;
}

void FillInfo(struct loop_info64* info, const std::string& file, const LoopAttachOptions& o) {
  memset(info, 0, sizeof(*info));
  info->lo_offset = o.offset;
  info->lo_sizelimit = o.sizeLimit;
  info->lo_flags = (o.readOnly ? LO_FLAGS_READ_ONLY : 0) | (o.autoclear ? LO_FLAGS_AUTOCLEAR : 0) |
                   (o.directIo ? LO_FLAGS_DIRECT_IO : 0) | (o.partscan ? LO_FLAGS_PARTSCAN : 0);
  strncpy(reinterpret_cast<char*>(info->lo_file_name), file.c_str(), LO_NAME_SIZE - 1);
}

void Backoff(int attempt) {
  struct timespec ts = {0, (attempt < 10 ? attempt + 1 : 10) * 1000000L};
  nanosleep(&ts, nullptr);
}

// Binds with the pre-5.8 sequence. Returns false when the device was taken by someone else (EBUSY).
bool AttachLegacy(int loopFd, int fileFd, const std::string& dev, const std::string& file,
                  const LoopAttachOptions& o) {
  if (ioctl(loopFd, LOOP_SET_FD, fileFd) < 0) {
    if (errno == EBUSY) return false;
    throw SysError{errno, "ioctl", "LOOP_SET_FD", dev, ""};
  }
  // From here the binding is ours: undo it if the rest fails.
  struct loop_info64 info;
  FillInfo(&info, file, o);
  int err = 0;
  const char* what = "";
  if (o.blockSize && ioctl(loopFd, LOOP_SET_BLOCK_SIZE, (unsigned long)o.blockSize) < 0) {
    err = errno; what = "LOOP_SET_BLOCK_SIZE";
  } else if (ioctl(loopFd, LOOP_SET_STATUS64, &info) < 0) {
    err = errno; what = "LOOP_SET_STATUS64";
  } else if (o.directIo && ioctl(loopFd, LOOP_SET_DIRECT_IO, 1UL) < 0) {
    err = errno; what = "LOOP_SET_DIRECT_IO";
  }
  if (err) {
    ioctl(loopFd, LOOP_CLR_FD, 0);
    throw SysError{err, "ioctl", what, dev, ""};
  }
  return true;
}

}  // namespace

LoopAttachResult LoopAttach(const std::string& file, const LoopAttachOptions& o) {
  Fd fileFd(OpenOrThrow(file, o.readOnly ? O_RDONLY : O_RDWR, "LOOP_CONFIGURE"));
  Fd ctl(OpenOrThrow("/dev/loop-control", O_RDWR, "LOOP_CTL_GET_FREE"));
  static bool configureMissing = false;  // learned once per process

  for (int attempt = 0; attempt < kMaxAttempts; attempt++) {
    int n = ioctl(ctl.fd, LOOP_CTL_GET_FREE);
    if (n < 0) throw SysError{errno, "ioctl", "LOOP_CTL_GET_FREE", "/dev/loop-control", ""};
    std::string dev = "/dev/loop" + std::to_string(n);
    int lfd = open(dev.c_str(), (o.readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (lfd < 0) {
      if (errno == ENOENT || errno == ENXIO) { Backoff(attempt); continue; }  // node not there yet
      throw SysError{errno, "open", "LOOP_CONFIGURE", dev, ""};
    }
    Fd loopFd(lfd);

    if (!configureMissing && !o.legacy) {
      struct loop_config cfg;
      memset(&cfg, 0, sizeof(cfg));
      cfg.fd = fileFd.fd;
      cfg.block_size = o.blockSize;
      FillInfo(&cfg.info, file, o);
      if (ioctl(loopFd.fd, LOOP_CONFIGURE, &cfg) == 0)
        return LoopAttachResult{uint32_t(n), attempt, true, o.keepOpen ? loopFd.Release() : -1};
      int err = errno;
      if (err == EBUSY || err == EAGAIN) { Backoff(attempt); continue; }  // lost the race: never CLR_FD it
      if (err != EINVAL && err != ENOTTY && err != ENOSYS) throw SysError{err, "ioctl", "LOOP_CONFIGURE", dev, ""};
      configureMissing = true;
    }
    if (AttachLegacy(loopFd.fd, fileFd.fd, dev, file, o))
      return LoopAttachResult{uint32_t(n), attempt, false, o.keepOpen ? loopFd.Release() : -1};
    Backoff(attempt);
  }
  throw SysError{EBUSY, "ioctl", "LOOP_CTL_GET_FREE", file, "every free loop device was taken by others"};
}

void LoopDetach(const std::string& device) {
  Fd fd(OpenOrThrow(device, O_RDONLY, "LOOP_CLR_FD"));
  if (ioctl(fd.fd, LOOP_CLR_FD, 0) < 0) throw SysError{errno, "ioctl", "LOOP_CLR_FD", device, ""};
}

LoopStatus LoopGetStatus(const std::string& device) {
  Fd fd(OpenOrThrow(device, O_RDONLY, "LOOP_GET_STATUS64"));
  struct loop_info64 info;
  memset(&info, 0, sizeof(info));
  if (ioctl(fd.fd, LOOP_GET_STATUS64, &info) < 0)
    throw SysError{errno, "ioctl", "LOOP_GET_STATUS64", device, ""};
  LoopStatus s;
  s.backingDev = info.lo_device;
  s.backingInode = info.lo_inode;
  s.offset = info.lo_offset;
  s.sizeLimit = info.lo_sizelimit;
  s.number = info.lo_number;
  s.flags = info.lo_flags;
  s.fileName = std::string(reinterpret_cast<const char*>(info.lo_file_name),
                           strnlen(reinterpret_cast<const char*>(info.lo_file_name), LO_NAME_SIZE));
  return s;
}

void LoopSetCapacity(const std::string& device) {
  Fd fd(OpenOrThrow(device, O_RDONLY, "LOOP_SET_CAPACITY"));
  if (ioctl(fd.fd, LOOP_SET_CAPACITY, 0) < 0) throw SysError{errno, "ioctl", "LOOP_SET_CAPACITY", device, ""};
}
