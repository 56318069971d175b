// Module entry: the error factory hook and the registration of every native call.
#include "addon.h"

#include <cstring>

#include "napi_ops.h"

namespace {
struct AddonData {
  Napi::FunctionReference errorFactory;
};

// setErrorFactory(fn): lib/errors.ts hands over the one function that builds every error.
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
  AddonData* data = env.GetInstanceData<AddonData>();
  if (data == nullptr || data->errorFactory.IsEmpty()) {
    Napi::Error err = Napi::Error::New(env, e.command + " " + e.target + ": " + strerror(e.err));
    return err.Value();
  }
  return data->errorFactory.Call({raw});
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  env.SetInstanceData(new AddonData());
  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory, "setErrorFactory"));
  RegisterDm(env, exports);
  RegisterLoopAndBlock(env, exports);
  return exports;
}

NODE_API_MODULE(devmapper, Init)
