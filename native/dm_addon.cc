// JS <-> DmRequest/DmResponse, and the DM entry points: dm (sync), dmAsync (libuv pool), dmWait (own thread),
// pollControl (own thread), openControl/closeFd.
#include <cerrno>
#include "uapi.h"
#include <poll.h>
#include <unistd.h>

#include "addon.h"
#include "block.h"
#include "blocking_thread.h"
#include "dm_ioctl.h"

namespace {

// The numbers of a request and of its reply travel in one Float64Array, the "head": a call then costs a few
// N-API calls instead of one per field (each N-API call is slow next to an ioctl). The slots are exported as
// DM_HEAD_* constants so lib/core/marshal.ts never restates them.
enum HeadSlot : uint32_t {
  kHeadFlags,        // in and out
  kHeadEventNr,      // in and out
  kHeadMajor,        // in (with kHeadHasDev) and out
  kHeadMinor,
  kHeadHasDev,       // in
  kHeadHasMessage,   // in: data is a TARGET_MSG text for sector kHeadSector
  kHeadSector,
  kHeadExpectErrno,  // in: this errno returns null instead of throwing (0: none)
  kHeadNode,         // in: a MapperNode step to take after the ioctl succeeds
  kHeadOpenCount,    // out
  kHeadTargetCount,
  kHeadBufferSize,
  kHeadVersion,      // out: 3 slots
  kHeadSize = kHeadVersion + 3,
};

// /dev/mapper/<name> upkeep without udev, done right after the ioctl, on the same thread: the promise API
// then makes or removes the node off the main thread, and JS pays nothing for it.
enum MapperNode : uint32_t {
  kNodeNone,
  kNodeMake,    // after RESUME: make the node (replacing a wrong one)
  kNodeRemove,  // after REMOVE: unlink it, unless the remove was deferred
};

void ApplyMapperNode(uint32_t step, const DmResponse& r) {
  if (step == kNodeNone || r.name.empty()) return;
  std::string path = std::string(kMapperDir) + "/" + r.name;
  if (step == kNodeMake) {
    uint32_t major, minor;
    DmDecodeDev(r.dev, &major, &minor);
    EnsureBlockNode(path, major, minor, kMapperNodeMode);
  } else if (step == kNodeRemove && !(r.flags & DM_DEFERRED_REMOVE)) {
    RemoveNode(path);
  }
}

#define NAPI_OK(env, call) \
  do { if ((call) != napi_ok) throw Napi::Error::New(env, "N-API call failed: " #call); } while (0)

// A string argument, or "" for undefined/null. Most names fit the stack buffer: one N-API call.
std::string StringArg(napi_env env, napi_value v, const char* what) {
  char buf[256];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, sizeof(buf), &len) != napi_ok) {
    napi_valuetype t;
    NAPI_OK(env, napi_typeof(env, v, &t));
    if (t == napi_undefined || t == napi_null) return std::string();
    throw Napi::TypeError::New(env, std::string(what) + " must be a string");
  }
  if (len < sizeof(buf) - 1) return std::string(buf, len);
  NAPI_OK(env, napi_get_value_string_utf8(env, v, nullptr, 0, &len));
  std::string s(len, '\0');
  NAPI_OK(env, napi_get_value_string_utf8(env, v, &s[0], len + 1, &len));
  return s;
}

double* HeadArg(napi_env env, napi_value v) {
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array || length < kHeadSize)
    throw Napi::TypeError::New(env, "head must be a Float64Array of DM_HEAD_SIZE");
  return static_cast<double*>(data);
}

// Targets come flat: [start, length, type, params, start, length, ...].
std::vector<DmTarget> TargetsArg(napi_env env, napi_value v) {
  std::vector<DmTarget> out;
  bool isArray = false;
  NAPI_OK(env, napi_is_array(env, v, &isArray));
  if (!isArray) return out;
  uint32_t n = 0;
  NAPI_OK(env, napi_get_array_length(env, v, &n));
  for (uint32_t i = 0; i + 3 < n; i += 4) {
    napi_value e[4];
    for (uint32_t k = 0; k < 4; k++) NAPI_OK(env, napi_get_element(env, v, i + k, &e[k]));
    double start = 0, length = 0;
    if (napi_get_value_double(env, e[0], &start) != napi_ok || napi_get_value_double(env, e[1], &length) != napi_ok)
      throw Napi::TypeError::New(env, "target start and length must be numbers");
    out.push_back(DmTarget{uint64_t(start), uint64_t(length), StringArg(env, e[2], "target type"), StringArg(env, e[3], "target params")});
  }
  return out;
}

// One request: the numbers in head, the strings positional (name, uuid, data), targets flat or undefined.
DmRequest ParseRequest(napi_env env, napi_value cmd, const double* head, napi_value name, napi_value uuid,
                       napi_value data, napi_value targets) {
  DmRequest r;
  int32_t c = 0;
  if (napi_get_value_int32(env, cmd, &c) != napi_ok) throw Napi::TypeError::New(env, "cmd must be a number");
  r.cmd = unsigned(c);
  r.flags = uint32_t(head[kHeadFlags]);
  r.eventNr = uint32_t(head[kHeadEventNr]);
  if (head[kHeadHasDev] != 0) r.dev = DmEncodeDev(uint32_t(head[kHeadMajor]), uint32_t(head[kHeadMinor]));
  r.name = StringArg(env, name, "name");
  r.uuid = StringArg(env, uuid, "uuid");
  r.data = StringArg(env, data, "data");
  r.hasMessage = head[kHeadHasMessage] != 0;
  r.messageSector = uint64_t(head[kHeadSector]);
  if (targets != nullptr) r.targets = TargetsArg(env, targets);
  return r;
}

void WriteHead(double* head, const DmResponse& r) {
  uint32_t major, minor;
  DmDecodeDev(r.dev, &major, &minor);
  head[kHeadFlags] = r.flags;
  head[kHeadEventNr] = r.eventNr;
  head[kHeadMajor] = major;
  head[kHeadMinor] = minor;
  head[kHeadOpenCount] = r.openCount;
  head[kHeadTargetCount] = r.targetCount;
  head[kHeadBufferSize] = r.bufferSize;
  for (int i = 0; i < 3; i++) head[kHeadVersion + i] = r.version[i];
}

Napi::Object DevToJs(Napi::Env env, uint64_t dev) {
  uint32_t major, minor;
  DmDecodeDev(dev, &major, &minor);
  Napi::Object o = Napi::Object::New(env);
  o.Set("major", major);
  o.Set("minor", minor);
  return o;
}

// The reply's strings: "name\0uuid" (neither can hold a NUL) when the command returns no payload, else an
// object with that key and the payload. lib/core/marshal.ts reads both shapes.
Napi::Value ResponseToJs(Napi::Env env, const DmResponse& r) {
  std::string key = r.name;
  key.push_back('\0');
  key += r.uuid;
  Napi::String keyJs = Napi::String::New(env, key.data(), key.size());
  bool payload = !r.targets.empty() || !r.deps.empty() || !r.devices.empty() || !r.versions.empty() || r.hasOutput;
  if (!payload) return keyJs;
  Napi::Object o = Napi::Object::New(env);
  o.Set("key", keyJs);
  if (!r.targets.empty()) {
    Napi::Array a = Napi::Array::New(env, r.targets.size());
    for (uint32_t i = 0; i < r.targets.size(); i++) {
      Napi::Object t = Napi::Object::New(env);
      t.Set("start", double(r.targets[i].start));
      t.Set("length", double(r.targets[i].length));
      t.Set("type", r.targets[i].type);
      t.Set("params", r.targets[i].params);
      a.Set(i, t);
    }
    o.Set("targets", a);
  }
  if (!r.deps.empty()) {
    Napi::Array a = Napi::Array::New(env, r.deps.size());
    for (uint32_t i = 0; i < r.deps.size(); i++) a.Set(i, DevToJs(env, r.deps[i]));
    o.Set("deps", a);
  }
  if (!r.devices.empty()) {
    Napi::Array devices = Napi::Array::New(env, r.devices.size());
    for (uint32_t i = 0; i < r.devices.size(); i++) {
      const DmNameEntry& e = r.devices[i];
      Napi::Object d = Napi::Object::New(env);
      d.Set("name", e.name);
      d.Set("dev", DevToJs(env, e.dev));
      if (e.hasExtra) d.Set("eventNr", e.eventNr);
      if (e.hasUuid) d.Set("uuid", e.uuid);
      devices.Set(i, d);
    }
    o.Set("devices", devices);
  }
  if (!r.versions.empty()) {
    Napi::Array a = Napi::Array::New(env, r.versions.size());
    for (uint32_t i = 0; i < r.versions.size(); i++) {
      Napi::Object v = Napi::Object::New(env);
      v.Set("name", r.versions[i].name);
      Napi::Array ver = Napi::Array::New(env, 3);
      for (uint32_t k = 0; k < 3; k++) ver.Set(k, r.versions[i].version[k]);
      v.Set("version", ver);
      a.Set(i, v);
    }
    o.Set("versions", a);
  }
  if (r.hasOutput) o.Set("output", r.output);
  return o;
}

// A reply handed back to JS: its numbers into the caller's head, its strings and payload as the value.
Napi::Value ReplyToJs(Napi::Env env, double* head, const DmResponse& r) {
  WriteHead(head, r);
  return ResponseToJs(env, r);
}

// dm(fd, cmd, head, name, uuid, data, targets). The head is written back with the reply's numbers; the
// return value carries its strings and payload, or null when the call failed with head's expected errno
// (cheaper than building an Error for "does it exist?").
struct DmOp {
  int fd;
  Napi::Reference<Napi::Value> headRef;  // keeps the head alive while the call runs off the main thread
  double* head;
  void Retain(const Napi::CallbackInfo& info) { headRef = Napi::Persistent(info[2]); }
  DmRequest req;
  DmResponse res;
  int expectErrno;
  uint32_t node;
  bool gotExpected = false;
  explicit DmOp(const Napi::CallbackInfo& info)
      : fd(ArgInt(info, 0)),
        head(HeadArg(info.Env(), info[2])),
        req(ParseRequest(info.Env(), info[1], head, info[3], info[4], info[5], info.Length() > 6 && !info[6].IsUndefined() ? napi_value(info[6]) : nullptr)),
        expectErrno(int(head[kHeadExpectErrno])),
        node(uint32_t(head[kHeadNode])) {}
  void Execute() {
    try {
      res = DmIoctl(fd, req);
    } catch (const SysError& e) {
      if (expectErrno == 0 || e.err != expectErrno) throw;
      gotExpected = true;
      return;
    }
    ApplyMapperNode(node, res);
  }
  Napi::Value Result(Napi::Env env) {
    return gotExpected ? env.Null() : ReplyToJs(env, head, res);
  }
};

// dmWait(fd, cmd, head, name, uuid): a DM command that may wait without bound (DM_DEV_WAIT; DM_DEV_SUSPEND
// of a device whose I/O the kernel queues) on a thread of its own, which cancel() interrupts.
struct DmWaitOp : DmOp {
  explicit DmWaitOp(const Napi::CallbackInfo& info) : DmOp(info) {}
  void Execute() {
    tInterruptible = true;
    DmOp::Execute();
  }
};

// dmTimed(fd, cmd, head, name, uuid, data, targets, timeoutMs): the same for a sync caller, which it blocks; after timeoutMs
// the call is interrupted (ECANCELED "timeout <ms>", or the command's own result if it finished meanwhile).
Napi::Value DmTimed(const Napi::CallbackInfo& info) {
  InstallWakeSignal();
  int timeoutMs = ArgInt(info, 7);
  DmWaitOp op(info);
  auto state = std::make_shared<BlockingState>();
  SysError error;
  bool failed = false;
  std::unique_lock<std::mutex> lock(state->mutex);  // the thread waits until its handle is stored
  std::thread t([&op, &error, &failed, state]() {
    OnlyWakeSignal();
    { std::lock_guard<std::mutex> g(state->mutex); }
    try {
      op.Execute();
    } catch (const SysError& e) {
      failed = true;
      error = e;
    } catch (const std::exception& e) {
      failed = true;
      error = FromStdException(e);
    }
    {
      std::lock_guard<std::mutex> g(state->mutex);
      state->done = true;
      if (failed && state->cancelled) {
        error.err = ECANCELED;
        error.detail = state->reason;
      }
    }
    state->cv.notify_all();
  });
  state->thread = t.native_handle();
  bool finished = state->cv.wait_for(lock, std::chrono::milliseconds(timeoutMs), [&] { return state->done; });
  lock.unlock();
  if (!finished) CancelBlocking(*state, "timeout " + std::to_string(timeoutMs));
  t.join();
  if (failed) CallJs(info.Env(), [&] { throw error; });
  return op.Result(info.Env());
}

// dmSeq(fd, steps): several ioctls in order, each step [cmd, head, name, uuid, data, targets], in one trip off
// the main thread (CREATE + LOAD + RESUME cost one hop, not three). Stops at the first failure; returns
// {replies, error}: the replies of the steps that ran, and the failure's error, if one failed.
struct DmSeqOp {
  int fd;
  Napi::Reference<Napi::Value> stepsRef;
  std::vector<double*> heads;
  std::vector<DmRequest> reqs;
  std::vector<uint32_t> nodes;  // each step's MapperNode
  std::vector<DmResponse> res;
  SysError error;
  bool failed = false;
  explicit DmSeqOp(const Napi::CallbackInfo& info) : fd(ArgInt(info, 0)) {
    napi_env env = info.Env();
    bool isArray = false;
    NAPI_OK(env, napi_is_array(env, info[1], &isArray));
    if (!isArray) throw Napi::TypeError::New(env, "steps must be an array");
    uint32_t n = 0;
    NAPI_OK(env, napi_get_array_length(env, info[1], &n));
    for (uint32_t i = 0; i < n; i++) {
      napi_value step, e[6];
      NAPI_OK(env, napi_get_element(env, info[1], i, &step));
      for (uint32_t k = 0; k < 6; k++) NAPI_OK(env, napi_get_element(env, step, k, &e[k]));
      heads.push_back(HeadArg(env, e[1]));
      reqs.push_back(ParseRequest(env, e[0], heads.back(), e[2], e[3], e[4], e[5]));
      nodes.push_back(uint32_t(heads.back()[kHeadNode]));
    }
  }
  void Retain(const Napi::CallbackInfo& info) { stepsRef = Napi::Persistent(info[1]); }
  void Execute() {
    for (size_t i = 0; i < reqs.size(); i++) {
      try {
        DmResponse r = DmIoctl(fd, reqs[i]);
        ApplyMapperNode(nodes[i], r);  // a failure here fails the step
        res.push_back(std::move(r));
      } catch (const SysError& e) {
        error = e;
        failed = true;
        return;
      }
    }
  }
  Napi::Value Result(Napi::Env env) {
    Napi::Array replies = Napi::Array::New(env, res.size());
    for (uint32_t i = 0; i < res.size(); i++) replies.Set(i, ReplyToJs(env, heads[i], res[i]));
    Napi::Object out = Napi::Object::New(env);
    out.Set("replies", replies);
    if (failed) {
      Napi::Value e = MakeError(env, error);
      if (e.IsEmpty() || napi_set_named_property(env, out, "error", e) != napi_ok) throw UnwindOnly(env);  // a pending exception, or a thread being terminated
    }
    return out;
  }
};

// pollControl(fd, timeoutMs): true when the control fd reports an event (after ARM_POLL), false on timeout.
struct PollOp {
  int fd;
  int timeoutMs;
  bool ready = false;
  explicit PollOp(const Napi::CallbackInfo& info) : fd(ArgInt(info, 0)), timeoutMs(ArgInt(info, 1)) {}
  void Execute() {
    struct pollfd p = {fd, POLLIN, 0};
    int rc = poll(&p, 1, timeoutMs);
    if (rc < 0) throw SysError{errno, "poll", "DM_DEV_ARM_POLL", kMapperControl, ""};
    ready = rc > 0;
  }
  Napi::Value Result(Napi::Env env) { return Napi::Boolean::New(env, ready); }
};

struct OpenControlOp {
  int fd = -1;
  explicit OpenControlOp(const Napi::CallbackInfo&) {}
  void Execute() { fd = DmOpenControl(); }
  Napi::Value Result(Napi::Env env) { return Napi::Number::New(env, fd); }
};

// dmIoctlStats(): {count, nanos} of the DM ioctls since the first call, for benchmarks.
Napi::Value IoctlStats(const Napi::CallbackInfo& info) {
  DmIoctlStats s = DmIoctlStatsStart();
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("count", double(s.count));
  o.Set("nanos", double(s.nanos));
  return o;
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(ArgInt(info, 0));
  return info.Env().Undefined();
}

}  // namespace

void RegisterDm(Napi::Env env, Napi::Object exports) {
  Napi::Object c = exports.Get("constants").As<Napi::Object>();
#define HEAD_SLOT(js, slot) c.Set("DM_HEAD_" js, uint32_t(slot))
  HEAD_SLOT("FLAGS", kHeadFlags); HEAD_SLOT("EVENT_NR", kHeadEventNr); HEAD_SLOT("MAJOR", kHeadMajor);
  HEAD_SLOT("MINOR", kHeadMinor); HEAD_SLOT("HAS_DEV", kHeadHasDev); HEAD_SLOT("HAS_MESSAGE", kHeadHasMessage);
  HEAD_SLOT("SECTOR", kHeadSector); HEAD_SLOT("EXPECT_ERRNO", kHeadExpectErrno); HEAD_SLOT("NODE", kHeadNode); HEAD_SLOT("OPEN_COUNT", kHeadOpenCount);
  HEAD_SLOT("TARGET_COUNT", kHeadTargetCount); HEAD_SLOT("BUFFER_SIZE", kHeadBufferSize);
  HEAD_SLOT("VERSION", kHeadVersion); HEAD_SLOT("SIZE", kHeadSize);
#undef HEAD_SLOT
  c.Set("DM_NODE_MAKE", uint32_t(kNodeMake));
  c.Set("DM_NODE_REMOVE", uint32_t(kNodeRemove));
  exports.Set("mapperDir", kMapperDir);
  exports.Set("dm", Napi::Function::New(env, RunSync<DmOp>, "dm"));
  exports.Set("dmAsync", Napi::Function::New(env, RunAsync<DmOp>, "dmAsync"));
  exports.Set("dmWait", Napi::Function::New(env, RunOnOwnThread<DmWaitOp>, "dmWait"));
  exports.Set("dmTimed", Napi::Function::New(env, DmTimed, "dmTimed"));
  exports.Set("dmSeq", Napi::Function::New(env, RunSync<DmSeqOp>, "dmSeq"));
  exports.Set("dmSeqAsync", Napi::Function::New(env, RunAsync<DmSeqOp>, "dmSeqAsync"));
  exports.Set("pollControl", Napi::Function::New(env, RunOnOwnThread<PollOp>, "pollControl"));
  exports.Set("openControl", Napi::Function::New(env, RunSync<OpenControlOp>, "openControl"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("dmIoctlStats", Napi::Function::New(env, IoctlStats, "dmIoctlStats"));
}
