// Marshalling of struct dm_ioctl for every DM command. Plain C++: no N-API here, so it runs on any thread.
// The struct layouts come from the kernel's own <linux/dm-ioctl.h>; this file is their only user.
#pragma once
#include <cstdint>
#include <string>
#include <vector>
#include "sys_error.h"

struct DmTarget {
  uint64_t start = 0;
  uint64_t length = 0;
  std::string type;
  std::string params;
};

struct DmRequest {
  unsigned cmd = 0;              // DM_*_CMD number
  std::string name;              // identify by exactly one of name, uuid, dev
  std::string uuid;
  uint64_t dev = 0;              // huge-encoded dev_t, 0 = unused
  uint32_t flags = 0;
  uint32_t eventNr = 0;
  std::vector<DmTarget> targets; // TABLE_LOAD
  bool hasMessage = false;       // TARGET_MSG
  uint64_t messageSector = 0;
  std::string data;              // RENAME new name/uuid, SET_GEOMETRY string, TARGET_MSG text
};

struct DmNameEntry {
  std::string name;
  uint64_t dev = 0;
  bool hasExtra = false;         // event_nr/uuid present (kernel >= 4.38)
  uint32_t eventNr = 0;
  bool hasUuid = false;
  std::string uuid;
};

struct DmTargetVersion {
  std::string name;
  uint32_t version[3] = {0, 0, 0};
};

struct DmResponse {
  uint32_t version[3] = {0, 0, 0};
  uint32_t flags = 0;
  int32_t openCount = 0;
  uint32_t eventNr = 0;
  uint32_t targetCount = 0;
  uint64_t dev = 0;
  std::string name;
  std::string uuid;
  std::vector<DmTarget> targets;          // TABLE_STATUS, DEV_WAIT
  std::vector<uint64_t> deps;             // TABLE_DEPS
  std::vector<DmNameEntry> devices;       // LIST_DEVICES
  std::vector<DmTargetVersion> versions;  // LIST_VERSIONS, GET_TARGET_VERSION
  bool hasOutput = false;                 // TARGET_MSG with DATA_OUT
  std::string output;
  uint32_t bufferSize = 0;                // what the call finally needed
};

// Which payload a command returns: decides the buffer and how the result is read.
const char* DmCommandName(unsigned cmd);

// Where device-mapper's nodes live: the control node, and named nodes with their mode when we make them
// (libdm's default without udev).
constexpr const char* kMapperDir = "/dev/mapper";
constexpr const char* kMapperControl = "/dev/mapper/control";
constexpr uint32_t kMapperNodeMode = 0600;

// Runs one DM ioctl on an open control fd. Grows the buffer on BUFFER_FULL (except for TARGET_MSG, whose
// overflow means it already ran) and remembers the size that worked, per command. Throws SysError.
DmResponse DmIoctl(int controlFd, const DmRequest& req);

// DM ioctls issued by this process and the time spent inside them (benchmarks subtract it from wall time).
// Counting starts with the first call; until then ioctls are not timed.
struct DmIoctlStats {
  uint64_t count;
  uint64_t nanos;
};
DmIoctlStats DmIoctlStatsStart();

// dev_t as the kernel encodes it in dm_ioctl.dev / dm_name_list.dev.
uint64_t DmEncodeDev(uint32_t major, uint32_t minor);
void DmDecodeDev(uint64_t dev, uint32_t* major, uint32_t* minor);

// Opens /dev/mapper/control (O_RDWR|O_CLOEXEC), creating the node from /sys/class/misc if it is missing.
int DmOpenControl();

// Set on a thread of its own that a cancel() may interrupt: an ioctl it runs returns EINTR instead of being
// retried (a DM_DEV_SUSPEND waiting on I/O gives up, and the kernel undoes the suspend).
extern thread_local bool tInterruptible;
