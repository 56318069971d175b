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

namespace {
bool SetString(napi_env env, napi_value o, const char* key, const std::string& v) {
  napi_value s;
  return napi_create_string_utf8(env, v.data(), v.size(), &s) == napi_ok && napi_set_named_property(env, o, key, s) == napi_ok;
}

bool SetNumber(napi_env env, napi_value o, const char* key, double v) {
  napi_value n;
  return napi_create_double(env, v, &n) == napi_ok && napi_set_named_property(env, o, key, n) == napi_ok;
}
}  // namespace

// In the raw C API, every status checked: on a thread being terminated (a worker, at process.exit()) these
// calls fail, and node-addon-api would make that failure fatal for the whole process.
Napi::Value MakeError(Napi::Env env, const SysError& e) {
  napi_value raw;
  if (napi_create_object(env, &raw) != napi_ok) return Napi::Value();
  bool ok = SetNumber(env, raw, "errno", e.err) && SetString(env, raw, "syscall", e.syscall) &&
            SetString(env, raw, "command", e.command) && SetString(env, raw, "target", e.target) &&
            SetString(env, raw, "detail", e.detail) && SetString(env, raw, "strerror", strerror(e.err)) &&
            (e.block < 0 || SetNumber(env, raw, "block", double(e.block))) &&
            (e.check.empty() || SetString(env, raw, "check", e.check));
  if (!ok) return Napi::Value();
  AddonData* data = env.GetInstanceData<AddonData>();
  napi_value result;
  if (data == nullptr || data->errorFactory.IsEmpty()) {
    const std::string text = e.command + " " + e.target + ": " + strerror(e.err);
    napi_value message;
    if (napi_create_string_utf8(env, text.data(), text.size(), &message) != napi_ok ||
        napi_create_error(env, nullptr, message, &result) != napi_ok)
      return Napi::Value();
    return Napi::Value(env, result);
  }
  napi_value factory, undefined;
  if (napi_get_reference_value(env, data->errorFactory, &factory) != napi_ok || napi_get_undefined(env, &undefined) != napi_ok ||
      napi_call_function(env, undefined, factory, 1, &raw, &result) != napi_ok)
    return Napi::Value();
  return Napi::Value(env, result);
}

// With its env: the default constructor's has none, which node-addon-api makes fatal when it unwinds.
Napi::Error UnwindOnly(Napi::Env env) { return Napi::Error(env, nullptr); }

void ThrowSysError(Napi::Env env, const SysError& e) {
  // Thrown here, in the C API, which fails quietly on a thread being terminated; the empty Napi::Error only
  // unwinds to node-addon-api, which has nothing left to throw. (Handing it the error to throw, it would make
  // a failed throw fatal.) An empty error from MakeError: the factory threw, and its exception stays pending.
  Napi::Value error = MakeError(env, e);
  if (!error.IsEmpty()) napi_throw(env, error);
  throw UnwindOnly(env);
}

void RejectWithSysError(Napi::Env env, Napi::Promise::Deferred& deferred, const SysError& e) {
  Napi::Value error = MakeError(env, e);
  if (error.IsEmpty()) {
    bool pending = false;
    napi_value thrown;
    if (napi_is_exception_pending(env, &pending) != napi_ok || !pending || napi_get_and_clear_last_exception(env, &thrown) != napi_ok) return;
    error = Napi::Value(env, thrown);  // the factory's own exception
  }
  try {
    deferred.Reject(error);
  } catch (const Napi::Error&) { /* the thread is being terminated: no one is left to settle for */ }
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
