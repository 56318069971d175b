// JS entry points for loop devices and block-device helpers; each has a sync twin and a promise.
#include "addon.h"
#include "block.h"
#include "dm_ioctl.h"  // kMapperNodeMode
#include "loop.h"
#include "napi_ops.h"

namespace {

Napi::Object LoopStatusToJs(Napi::Env env, const LoopStatus& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("backingDev", double(s.backingDev));
  o.Set("backingInode", double(s.backingInode));
  o.Set("offset", double(s.offset));
  o.Set("sizeLimit", double(s.sizeLimit));
  o.Set("number", s.number);
  o.Set("flags", s.flags);
  o.Set("fileName", s.fileName);
  return o;
}

// loopAttach(file, {readOnly, autoclear, directIo, partscan, offset, sizeLimit, blockSize, keepOpen, legacy})
struct LoopAttachOp {
  std::string file;
  LoopAttachOptions opts;
  LoopAttachResult res{};
  explicit LoopAttachOp(const Napi::CallbackInfo& info) : file(ArgString(info, 0)) {
    Napi::Object o = ArgObject(info, 1);
    opts.readOnly = GetBool(o, "readOnly");
    opts.autoclear = GetBool(o, "autoclear");
    opts.directIo = GetBool(o, "directIo");
    opts.partscan = GetBool(o, "partscan");
    opts.offset = GetU64(o, "offset");
    opts.sizeLimit = GetU64(o, "sizeLimit");
    opts.blockSize = uint32_t(GetU64(o, "blockSize"));
    opts.keepOpen = GetBool(o, "keepOpen");
    opts.legacy = GetBool(o, "legacy");
  }
  void Execute() { res = LoopAttach(file, opts); }
  Napi::Value Result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("number", res.number);
    o.Set("attempts", res.attempts);
    o.Set("usedConfigure", res.usedConfigure);
    o.Set("fd", res.fd);
    return o;
  }
};

// The calls that take one device path.
struct PathOp {
  std::string path;
  explicit PathOp(const Napi::CallbackInfo& info) : path(ArgString(info, 0)) {}
};
struct LoopDetachOp : PathOp {
  using PathOp::PathOp;
  void Execute() { LoopDetach(path); }
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};
struct LoopStatusOp : PathOp {
  using PathOp::PathOp;
  LoopStatus res;
  void Execute() { res = LoopGetStatus(path); }
  Napi::Value Result(Napi::Env env) { return LoopStatusToJs(env, res); }
};
struct LoopSetCapacityOp : PathOp {
  using PathOp::PathOp;
  void Execute() { LoopSetCapacity(path); }
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};
struct BlockSizeOp : PathOp {
  using PathOp::PathOp;
  uint64_t bytes = 0;
  void Execute() { bytes = BlockGetSize(path); }
  Napi::Value Result(Napi::Env env) { return Napi::Number::New(env, double(bytes)); }
};
struct BlockFlushOp : PathOp {
  using PathOp::PathOp;
  void Execute() { BlockFlush(path); }
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};
struct DeviceNumberOp : PathOp {
  using PathOp::PathOp;
  uint32_t major = 0, minor = 0;
  void Execute() { DeviceNumber(path, &major, &minor); }
  Napi::Value Result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("major", major);
    o.Set("minor", minor);
    return o;
  }
};
// blockDiscard(path, {offset, length}) in bytes
struct BlockDiscardOp : PathOp {
  uint64_t offset, length;
  explicit BlockDiscardOp(const Napi::CallbackInfo& info)
      : PathOp(info), offset(GetU64(ArgObject(info, 1), "offset")), length(GetU64(ArgObject(info, 1), "length")) {}
  void Execute() { BlockDiscard(path, offset, length); }
  Napi::Value Result(Napi::Env env) { return env.Undefined(); }
};
// ensureBlockNode(path, {major, minor, mode}) -> created or replaced
struct EnsureNodeOp : PathOp {
  uint32_t major, minor, mode;
  bool changed = false;
  explicit EnsureNodeOp(const Napi::CallbackInfo& info)
      : PathOp(info),
        major(uint32_t(GetU64(ArgObject(info, 1), "major"))),
        minor(uint32_t(GetU64(ArgObject(info, 1), "minor"))),
        mode(uint32_t(GetU64(ArgObject(info, 1), "mode", kMapperNodeMode))) {}
  void Execute() { changed = EnsureBlockNode(path, major, minor, mode); }
  Napi::Value Result(Napi::Env env) { return Napi::Boolean::New(env, changed); }
};

}  // namespace

void RegisterLoopAndBlock(Napi::Env env, Napi::Object exports) {
  ExportBoth<LoopAttachOp>(env, exports, "loopAttach");
  ExportBoth<LoopDetachOp>(env, exports, "loopDetach");
  ExportBoth<LoopStatusOp>(env, exports, "loopStatus");
  ExportBoth<LoopSetCapacityOp>(env, exports, "loopSetCapacity");
  ExportBoth<BlockSizeOp>(env, exports, "blockSize");
  ExportBoth<BlockDiscardOp>(env, exports, "blockDiscard");
  ExportBoth<BlockFlushOp>(env, exports, "blockFlush");
  ExportBoth<DeviceNumberOp>(env, exports, "deviceNumber");
  ExportBoth<EnsureNodeOp>(env, exports, "ensureBlockNode");
}
