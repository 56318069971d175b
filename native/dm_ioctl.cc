#include "dm_ioctl.h"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include "uapi.h"
#include "raw_syscalls.h"
#include <memory>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>


thread_local bool tInterruptible = false;

namespace {

constexpr unsigned kCommands = DM_GET_TARGET_VERSION_CMD + 1;
constexpr uint32_t kHeader = sizeof(struct dm_ioctl);
constexpr uint32_t kDefaultData = 16 * 1024;   // libdm's default for commands that return data
constexpr uint32_t kMaxBuffer = 1u << 30;

struct CommandInfo {
  const char* name;
  uint32_t minMinor;   // interface minor version the command needs (major is always 4)
  bool returnsData;
};

const CommandInfo kInfo[kCommands] = {
    {"DM_VERSION", 0, false},           {"DM_REMOVE_ALL", 0, false},
    {"DM_LIST_DEVICES", 0, true},       {"DM_DEV_CREATE", 0, false},
    {"DM_DEV_REMOVE", 0, false},        {"DM_DEV_RENAME", 0, false},
    {"DM_DEV_SUSPEND", 0, false},       {"DM_DEV_STATUS", 0, false},
    {"DM_DEV_WAIT", 0, true},           {"DM_TABLE_LOAD", 0, false},
    {"DM_TABLE_CLEAR", 0, false},       {"DM_TABLE_DEPS", 0, true},
    {"DM_TABLE_STATUS", 0, true},       {"DM_LIST_VERSIONS", 1, true},
    {"DM_TARGET_MSG", 2, true},         {"DM_DEV_SET_GEOMETRY", 6, false},
    {"DM_DEV_ARM_POLL", 36, false},     {"DM_GET_TARGET_VERSION", 41, true},
};

// The buffer size that last worked, per command: a pool with thousands of devices pays the doubling once.
std::atomic<uint32_t> gRemembered[kCommands];

// Time spent inside the ioctl syscall, for benchmarks: wall time minus this is the library's own cost.
// Counted only once a benchmark turns it on: users' ioctls pay no clock reads.
std::atomic<bool> gStatsOn{false};
std::atomic<uint64_t> gIoctlCount{0}, gIoctlNanos{0};

uint64_t MonotonicNanos() {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return uint64_t(t.tv_sec) * 1000000000u + uint64_t(t.tv_nsec);
}

uint32_t Align8(uint32_t v) { return (v + 7u) & ~7u; }

void CopyField(char* dst, size_t cap, const std::string& s) {
  // Callers validated lengths in TS; truncate defensively and always NUL-terminate.
  size_t n = s.size() < cap - 1 ? s.size() : cap - 1;
  memcpy(dst, s.data(), n);
  dst[n] = 0;
}

std::string ReadString(const char* p, const char* end) {
  const char* z = static_cast<const char*>(memchr(p, 0, end - p));
  return std::string(p, z ? z : end);
}

// The kernel splits params on spaces and treats '\' as an escape: double each backslash, as libdm does.
std::string EscapeParams(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

// Bytes the request itself puts after the header.
uint32_t PayloadSize(const DmRequest& req) {
  uint32_t n = 0;
  for (const DmTarget& t : req.targets)
    n += Align8(sizeof(struct dm_target_spec) + EscapeParams(t.params).size() + 1);
  if (req.hasMessage) n += sizeof(struct dm_target_msg) + req.data.size() + 1;
  else if (!req.data.empty()) n += req.data.size() + 1;
  return Align8(n);
}

void WritePayload(char* data, const DmRequest& req) {
  char* p = data;
  for (const DmTarget& t : req.targets) {
    auto* spec = reinterpret_cast<struct dm_target_spec*>(p);
    spec->sector_start = t.start;
    spec->length = t.length;
    spec->status = 0;
    CopyField(spec->target_type, sizeof(spec->target_type), t.type);
    std::string params = EscapeParams(t.params);
    memcpy(p + sizeof(*spec), params.c_str(), params.size() + 1);
    uint32_t step = Align8(sizeof(*spec) + params.size() + 1);
    spec->next = step;  // on input: distance from this spec to the next
    p += step;
  }
  if (req.hasMessage) {
    auto* msg = reinterpret_cast<struct dm_target_msg*>(p);
    msg->sector = req.messageSector;
    memcpy(msg->message, req.data.c_str(), req.data.size() + 1);
  } else if (!req.data.empty()) {
    memcpy(p, req.data.c_str(), req.data.size() + 1);
  }
}

void ReadTargets(const char* data, const char* end, uint32_t count, DmResponse* out) {
  // On output `next` is measured from the start of the data area, not from the spec.
  const char* p = data;
  for (uint32_t i = 0; i < count; i++) {
    if (p + sizeof(struct dm_target_spec) > end) break;
    const auto* spec = reinterpret_cast<const struct dm_target_spec*>(p);
    DmTarget t;
    t.start = spec->sector_start;
    t.length = spec->length;
    t.type = ReadString(spec->target_type, spec->target_type + sizeof(spec->target_type));
    t.params = ReadString(p + sizeof(*spec), end);
    out->targets.push_back(std::move(t));
    p = data + spec->next;
  }
}

void ReadNames(const char* data, const char* end, bool extended, DmResponse* out) {
  const char* p = data;
  if (p + sizeof(struct dm_name_list) > end) return;
  if (reinterpret_cast<const struct dm_name_list*>(p)->dev == 0) return;  // empty list
  for (;;) {
    const auto* nl = reinterpret_cast<const struct dm_name_list*>(p);
    DmNameEntry e;
    e.dev = nl->dev;
    e.name = ReadString(nl->name, end);
    if (extended) {
      // Since 4.38: after the name's NUL, 8-aligned: u32 event_nr, u32 flags, then the uuid if flagged.
      uintptr_t base = reinterpret_cast<uintptr_t>(data);
      uintptr_t off = reinterpret_cast<uintptr_t>(nl->name) - base + e.name.size() + 1;
      off = (off + 7) & ~uintptr_t(7);
      const char* ev = data + off;
      if (ev + 8 <= end) {
        const auto* words = reinterpret_cast<const uint32_t*>(ev);
        e.hasExtra = true;
        e.eventNr = words[0];
        if (words[1] & DM_NAME_LIST_FLAG_HAS_UUID) {
          e.hasUuid = true;
          e.uuid = ReadString(ev + 8, end);
        }
      }
    }
    out->devices.push_back(std::move(e));
    if (nl->next == 0) break;
    p += nl->next;
    if (p + sizeof(struct dm_name_list) > end) break;
  }
}

void ReadVersions(const char* data, const char* end, DmResponse* out) {
  const char* p = data;
  for (;;) {
    if (p + sizeof(struct dm_target_versions) > end) break;
    const auto* tv = reinterpret_cast<const struct dm_target_versions*>(p);
    DmTargetVersion v;
    v.name = ReadString(tv->name, end);
    memcpy(v.version, tv->version, sizeof(v.version));
    out->versions.push_back(std::move(v));
    if (tv->next == 0) break;
    p += tv->next;
  }
}

void ReadPayload(unsigned cmd, const struct dm_ioctl* io, DmResponse* out) {
  const char* base = reinterpret_cast<const char*>(io);
  if (io->data_start < kHeader || io->data_size <= io->data_start) return;
  const char* data = base + io->data_start;
  const char* end = base + io->data_size;
  switch (cmd) {
    case DM_TABLE_STATUS_CMD:
    case DM_DEV_WAIT_CMD:
      ReadTargets(data, end, io->target_count, out);
      break;
    case DM_TABLE_DEPS_CMD: {
      const auto* deps = reinterpret_cast<const struct dm_target_deps*>(data);
      if (data + sizeof(*deps) > end) break;
      for (uint32_t i = 0; i < deps->count && data + sizeof(*deps) + (i + 1) * 8 <= end; i++)
        out->deps.push_back(deps->dev[i]);
      break;
    }
    case DM_LIST_DEVICES_CMD:
      ReadNames(data, end, io->version[0] == 4 && io->version[1] >= 38, out);
      break;
    case DM_LIST_VERSIONS_CMD:
    case DM_GET_TARGET_VERSION_CMD:
      ReadVersions(data, end, out);
      break;
    case DM_TARGET_MSG_CMD:
      if (io->flags & DM_DATA_OUT_FLAG) {
        out->hasOutput = true;
        out->output = ReadString(data, end);
      }
      break;
    default:
      break;
  }
}

struct FreeDeleter {
  void operator()(void* p) const { free(p); }
};

}  // namespace

DmIoctlStats DmIoctlStatsStart() {
  gStatsOn.store(true, std::memory_order_relaxed);
  return {gIoctlCount.load(), gIoctlNanos.load()};
}

const char* DmCommandName(unsigned cmd) { return cmd < kCommands ? kInfo[cmd].name : "DM_UNKNOWN"; }

uint64_t DmEncodeDev(uint32_t major, uint32_t minor) {
  return (minor & 0xffu) | (uint64_t(major & 0xfffu) << 8) | (uint64_t(minor & ~0xffu) << 12) |
         (uint64_t(major & ~0xfffu) << 32);
}

void DmDecodeDev(uint64_t dev, uint32_t* major, uint32_t* minor) {
  *major = uint32_t(((dev >> 8) & 0xfff) | ((dev >> 32) & ~uint64_t(0xfff)));
  *minor = uint32_t((dev & 0xff) | ((dev >> 12) & ~uint64_t(0xff)));
}

DmResponse DmIoctl(int fd, const DmRequest& req) {
  if (req.cmd >= kCommands) throw SysError{EINVAL, "ioctl", "DM_UNKNOWN", req.name, "unknown command"};
  const CommandInfo& info = kInfo[req.cmd];
  std::string target = !req.name.empty() ? req.name : req.uuid;

  uint32_t payload = PayloadSize(req);
  uint32_t size = kHeader + payload;
  if (info.returnsData) {
    uint32_t want = kHeader + (payload > kDefaultData ? payload : kDefaultData);
    uint32_t remembered = gRemembered[req.cmd].load(std::memory_order_relaxed);
    size = remembered > want ? remembered : want;
  }

  for (;;) {
    std::unique_ptr<char, FreeDeleter> buf(static_cast<char*>(aligned_alloc(8, Align8(size))));
    if (!buf) throw SysError{ENOMEM, "malloc", info.name, target, ""};
    memset(buf.get(), 0, size);
    auto* io = reinterpret_cast<struct dm_ioctl*>(buf.get());
    io->version[0] = DM_VERSION_MAJOR;
    io->version[1] = info.minMinor;
    io->version[2] = 0;
    io->data_size = size;
    io->data_start = kHeader;
    io->flags = req.flags;
    io->event_nr = req.eventNr;
    io->dev = req.dev;
    io->target_count = uint32_t(req.targets.size());
    CopyField(io->name, sizeof(io->name), req.name);
    CopyField(io->uuid, sizeof(io->uuid), req.uuid);
    WritePayload(buf.get() + kHeader, req);

    int rc;
    bool timed = gStatsOn.load(std::memory_order_relaxed);
    uint64_t t0 = timed ? MonotonicNanos() : 0;
    do {
      rc = ioctl(fd, _IOC(_IOC_READ | _IOC_WRITE, DM_IOCTL, req.cmd, sizeof(struct dm_ioctl)), io);
    } while (rc < 0 && errno == EINTR && req.cmd != DM_DEV_WAIT_CMD && !tInterruptible);
    int err = errno;
    if (timed) {
      gIoctlNanos.fetch_add(MonotonicNanos() - t0, std::memory_order_relaxed);
      gIoctlCount.fetch_add(1, std::memory_order_relaxed);
    }
    if (rc < 0) throw SysError{err, "ioctl", info.name, target, ""};

    if (io->flags & DM_BUFFER_FULL_FLAG) {
      if (size >= kMaxBuffer) throw SysError{ENOBUFS, "ioctl", info.name, target, "result exceeds 1 GiB"};
      uint32_t bigger = size * 2;
      gRemembered[req.cmd].store(bigger, std::memory_order_relaxed);
      if (req.cmd == DM_TARGET_MSG_CMD)  // the message ran; sending it again would run it twice
        throw SysError{EOVERFLOW, "ioctl", info.name, target,
                       "the message ran but its output did not fit; not re-sent"};
      size = bigger;
      continue;
    }

    DmResponse out;
    memcpy(out.version, io->version, sizeof(out.version));
    out.flags = io->flags;
    out.openCount = io->open_count;
    out.eventNr = io->event_nr;
    out.targetCount = io->target_count;
    out.dev = io->dev;
    out.name = ReadString(io->name, io->name + sizeof(io->name));
    out.uuid = ReadString(io->uuid, io->uuid + sizeof(io->uuid));
    out.bufferSize = size;
    ReadPayload(req.cmd, io, &out);
    return out;
  }
}

int DmOpenControl() {
  const char* path = kMapperControl;
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd >= 0 || errno != ENOENT) {
    if (fd < 0) throw SysError{errno, "open", "", path, ""};
    return fd;
  }
  // No node (no udev, fresh devtmpfs without it): make it from the misc device's numbers, as libdm does.
  // No misc device means no device-mapper in this kernel: make nothing (a node would name no driver).
  unsigned major = 0, minor = 0;
  int sfd = open("/sys/class/misc/device-mapper/dev", O_RDONLY | O_CLOEXEC);
  if (sfd >= 0) {
    char text[32] = {0};
    ssize_t n = read(sfd, text, sizeof(text) - 1);
    close(sfd);
    if (n <= 0 || sscanf(text, "%u:%u", &major, &minor) != 2) major = 0;
  }
  if (major == 0)
    throw SysError{ENODEV, "open", "", path, "this kernel has no device-mapper (is dm-mod loaded?)"};
  mkdir(kMapperDir, 0755);
  if (SysMknod(path, S_IFCHR | 0600, makedev(major, minor)) < 0 && errno != EEXIST)
    throw SysError{errno, "mknod", "", path, ""};
  fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) throw SysError{errno, "open", "", path, ""};
  return fd;
}
