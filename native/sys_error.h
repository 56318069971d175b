// One failure from the kernel or libc, carried from a worker thread to the JS error factory (lib/core/errors.ts).
#pragma once
#include <string>

struct SysError {
  int err;               // errno
  std::string syscall;   // "ioctl", "open", "mknod", ...
  std::string command;   // "DM_DEV_REMOVE", "LOOP_CONFIGURE", ...
  std::string target;    // device name or path the call was about
  std::string detail;    // optional extra words for the message
};
