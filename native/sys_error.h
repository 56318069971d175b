// One failure from the kernel or libc, carried from a worker thread to the JS error factory (lib/core/errors.ts).
#pragma once
#include <cstdint>
#include <string>

struct SysError {
  int err;               // errno
  std::string syscall;   // "ioctl", "open", "mknod", ...
  std::string command;   // "DM_DEV_REMOVE", "LOOP_CONFIGURE", ...
  std::string target;    // device name or path the call was about
  std::string detail;    // optional extra words for the message
  // Metadata verification failures (command "metadata"): the block that failed and the check it failed.
  int64_t block = -1;
  std::string check;
};
