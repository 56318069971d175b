// Module entry: the error factory hook and the registration of every native call.
#include "addon.h"

#include <cstring>
#include "uapi.h"

#include "napi_ops.h"

namespace {
struct AddonData {
  Napi::FunctionReference errorFactory;
};

// setErrorFactory(fn): lib/core/errors.ts hands over the one function that builds every error.
Napi::Value SetErrorFactory(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "setErrorFactory needs a function");
  info.Env().GetInstanceData<AddonData>()->errorFactory = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}
}  // namespace

Napi::Value MakeError(Napi::Env env, const SysError& e) {
  Napi::Object raw = Napi::Object::New(env);
  raw.Set("errno", e.err);
  raw.Set("syscall", e.syscall);
  raw.Set("command", e.command);
  raw.Set("target", e.target);
  raw.Set("detail", e.detail);
  raw.Set("strerror", strerror(e.err));
  if (e.block >= 0) raw.Set("block", double(e.block));
  if (!e.check.empty()) raw.Set("check", e.check);
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data == nullptr || data->errorFactory.IsEmpty()) {
    Napi::Error err = Napi::Error::New(env, e.command + " " + e.target + ": " + strerror(e.err));
    return err.Value();
  }
  return data->errorFactory.Call({raw});
}

// The kernel header's numbers, so lib/ never restates them.
Napi::Object Constants(Napi::Env env) {
  Napi::Object c = Napi::Object::New(env);
#define DM_CONST(x) c.Set(#x, Napi::Number::New(env, x))
  DM_CONST(DM_VERSION_CMD); DM_CONST(DM_REMOVE_ALL_CMD); DM_CONST(DM_LIST_DEVICES_CMD);
  DM_CONST(DM_DEV_CREATE_CMD); DM_CONST(DM_DEV_REMOVE_CMD); DM_CONST(DM_DEV_RENAME_CMD);
  DM_CONST(DM_DEV_SUSPEND_CMD); DM_CONST(DM_DEV_STATUS_CMD); DM_CONST(DM_DEV_WAIT_CMD);
  DM_CONST(DM_TABLE_LOAD_CMD); DM_CONST(DM_TABLE_CLEAR_CMD); DM_CONST(DM_TABLE_DEPS_CMD);
  DM_CONST(DM_TABLE_STATUS_CMD); DM_CONST(DM_LIST_VERSIONS_CMD); DM_CONST(DM_TARGET_MSG_CMD);
  DM_CONST(DM_DEV_SET_GEOMETRY_CMD); DM_CONST(DM_DEV_ARM_POLL_CMD); DM_CONST(DM_GET_TARGET_VERSION_CMD);
  DM_CONST(DM_READONLY_FLAG); DM_CONST(DM_SUSPEND_FLAG); DM_CONST(DM_PERSISTENT_DEV_FLAG);
  DM_CONST(DM_STATUS_TABLE_FLAG); DM_CONST(DM_ACTIVE_PRESENT_FLAG); DM_CONST(DM_INACTIVE_PRESENT_FLAG);
  DM_CONST(DM_BUFFER_FULL_FLAG); DM_CONST(DM_SKIP_LOCKFS_FLAG); DM_CONST(DM_NOFLUSH_FLAG);
  DM_CONST(DM_QUERY_INACTIVE_TABLE_FLAG); DM_CONST(DM_UEVENT_GENERATED_FLAG); DM_CONST(DM_UUID_FLAG);
  DM_CONST(DM_SECURE_DATA_FLAG); DM_CONST(DM_DATA_OUT_FLAG); DM_CONST(DM_DEFERRED_REMOVE);
  DM_CONST(DM_INTERNAL_SUSPEND_FLAG); DM_CONST(DM_NAME_LEN); DM_CONST(DM_UUID_LEN);
  DM_CONST(LO_FLAGS_READ_ONLY); DM_CONST(LO_FLAGS_AUTOCLEAR); DM_CONST(LO_FLAGS_PARTSCAN);
  DM_CONST(LO_FLAGS_DIRECT_IO);
#undef DM_CONST
  return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory, "setErrorFactory"));
  exports.Set("constants", Constants(env));
  RegisterDm(env, exports);
  RegisterLoopAndBlock(env, exports);
  RegisterFileLock(env, exports);
  RegisterKvStore(env, exports);
  RegisterThinMetadata(env, exports);
  return exports;
}

NODE_API_MODULE(devmapper, Init)
