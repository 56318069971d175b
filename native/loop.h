// Loop device ioctls (<linux/loop.h>). Plain C++, callable from any thread; throws SysError.
#pragma once
#include <cstdint>
#include <string>

struct LoopAttachOptions {
  bool readOnly = false;
  bool autoclear = false;
  bool directIo = false;
  bool partscan = false;
  uint64_t offset = 0;      // bytes
  uint64_t sizeLimit = 0;   // bytes, 0 = to the end of the file
  uint32_t blockSize = 0;   // logical block size, 0 = kernel default (512)
  bool keepOpen = false;    // return the loop fd open (autoclear devices detach at their last close)
  bool legacy = false;      // SET_FD + SET_STATUS64 even where LOOP_CONFIGURE exists
};

struct LoopStatus {
  uint64_t backingDev = 0;  // st_dev of the backing file (userspace dev_t)
  uint64_t backingInode = 0;
  uint64_t offset = 0;
  uint64_t sizeLimit = 0;
  uint32_t number = 0;
  uint32_t flags = 0;
  std::string fileName;     // the kernel keeps at most 63 bytes; sysfs has the full path
};

struct LoopAttachResult {
  uint32_t number;
  int attempts;             // GET_FREE rounds that lost a race before one won
  bool usedConfigure;       // false when LOOP_CONFIGURE was missing and SET_FD + SET_STATUS64 were used
  int fd;                   // the open loop device when keepOpen, else -1
};

LoopAttachResult LoopAttach(const std::string& file, const LoopAttachOptions& opts);
void LoopDetach(const std::string& device);
LoopStatus LoopGetStatus(const std::string& device);
void LoopSetCapacity(const std::string& device);
