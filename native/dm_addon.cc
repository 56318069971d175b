// JS <-> DmRequest/DmResponse, and the DM entry points: dm (sync), dmAsync (libuv pool), dmWait (own thread),
// pollControl (own thread), openControl/closeFd.
#include <cerrno>
#include <linux/dm-ioctl.h>
#include <poll.h>
#include <unistd.h>

#include "addon.h"
#include "blocking_thread.h"
#include "dm_ioctl.h"

namespace {

uint64_t GetDev(Napi::Object o) {
  Napi::Value v = o.Get("dev");
  if (!v.IsObject()) return 0;
  Napi::Object d = v.As<Napi::Object>();
  return DmEncodeDev(uint32_t(GetU64(d, "major")), uint32_t(GetU64(d, "minor")));
}

Napi::Object DevToJs(Napi::Env env, uint64_t dev) {
  uint32_t major, minor;
  DmDecodeDev(dev, &major, &minor);
  Napi::Object o = Napi::Object::New(env);
  o.Set("major", major);
  o.Set("minor", minor);
  return o;
}

DmRequest ParseRequest(const Napi::CallbackInfo& info, size_t cmdIndex) {
  DmRequest r;
  r.cmd = unsigned(ArgInt(info, cmdIndex));
  Napi::Object o = ArgObject(info, cmdIndex + 1);
  r.name = GetString(o, "name");
  r.uuid = GetString(o, "uuid");
  r.dev = GetDev(o);
  r.flags = uint32_t(GetU64(o, "flags"));
  r.eventNr = uint32_t(GetU64(o, "eventNr"));
  r.data = GetString(o, "data");
  Napi::Value targets = o.Get("targets");
  if (targets.IsArray()) {
    Napi::Array a = targets.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Object t = a.Get(i).As<Napi::Object>();
      r.targets.push_back(DmTarget{GetU64(t, "start"), GetU64(t, "length"), GetString(t, "type"), GetString(t, "params")});
    }
  }
  Napi::Value msg = o.Get("message");
  if (msg.IsObject()) {
    Napi::Object m = msg.As<Napi::Object>();
    r.hasMessage = true;
    r.messageSector = GetU64(m, "sector");
    r.data = GetString(m, "text");
  }
  return r;
}

Napi::Object ResponseToJs(Napi::Env env, const DmResponse& r) {
  Napi::Object o = Napi::Object::New(env);
  Napi::Array version = Napi::Array::New(env, 3);
  for (uint32_t i = 0; i < 3; i++) version.Set(i, r.version[i]);
  o.Set("version", version);
  o.Set("flags", r.flags);
  o.Set("openCount", r.openCount);
  o.Set("eventNr", r.eventNr);
  o.Set("targetCount", r.targetCount);
  o.Set("dev", DevToJs(env, r.dev));
  o.Set("name", r.name);
  o.Set("uuid", r.uuid);
  o.Set("bufferSize", r.bufferSize);
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

// dm(fd, cmd, request): request.expectErrno names an errno the caller expects (ENXIO for "does it exist?"):
// it comes back as null instead of a thrown error, which is much cheaper than building an Error.
struct DmOp {
  int fd;
  DmRequest req;
  DmResponse res;
  int expectErrno;
  bool gotExpected = false;
  explicit DmOp(const Napi::CallbackInfo& info)
      : fd(ArgInt(info, 0)),
        req(ParseRequest(info, 1)),
        expectErrno(info[3].IsObject() ? int(GetU64(info[3].As<Napi::Object>(), "expectErrno")) : 0) {}
  void Execute() {
    try {
      res = DmIoctl(fd, req);
    } catch (const SysError& e) {
      if (expectErrno == 0 || e.err != expectErrno) throw;
      gotExpected = true;
    }
  }
  Napi::Value Result(Napi::Env env) { return gotExpected ? env.Null() : Napi::Value(ResponseToJs(env, res)); }
};

// dmWait(fd, request): DM_DEV_WAIT on a thread of its own.
struct DmWaitOp : DmOp {
  explicit DmWaitOp(const Napi::CallbackInfo& info) : DmOp(info) { req.cmd = DM_DEV_WAIT_CMD; }
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
    if (rc < 0) throw SysError{errno, "poll", "DM_DEV_ARM_POLL", "/dev/mapper/control", ""};
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

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  close(ArgInt(info, 0));
  return info.Env().Undefined();
}

}  // namespace

void RegisterDm(Napi::Env env, Napi::Object exports) {
  exports.Set("dm", Napi::Function::New(env, RunSync<DmOp>, "dm"));
  exports.Set("dmAsync", Napi::Function::New(env, RunAsync<DmOp>, "dmAsync"));
  exports.Set("dmWait", Napi::Function::New(env, RunOnOwnThread<DmWaitOp>, "dmWait"));
  exports.Set("pollControl", Napi::Function::New(env, RunOnOwnThread<PollOp>, "pollControl"));
  exports.Set("openControl", Napi::Function::New(env, RunSync<OpenControlOp>, "openControl"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
}
