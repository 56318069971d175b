// The floor for the library's rows in bench/lifecycle.ts: JavaScript calls one native function per DM ioctl,
// and that function does the raw step from raw-steps.h with no marshalling at all (three integers in, one
// out). Whatever a per-call JS API costs beyond the ioctls in this machine, this pays too; the library's
// rows are read against it. Bench-only: not part of the package.
#include <napi.h>

#include <string>

#include "../raw-steps.h"

namespace {

raw_ctx gCtx;
std::string gPool, gPoolDev;

// setup(fd, pool, poolDev, sectors)
Napi::Value Setup(const Napi::CallbackInfo& info) {
  gPool = info[1].As<Napi::String>().Utf8Value();
  gPoolDev = info[2].As<Napi::String>().Utf8Value();
  gCtx = raw_ctx{info[0].As<Napi::Number>().Int32Value(), gPool.c_str(), gPoolDev.c_str(), "floorbench-",
                 static_cast<unsigned long long>(info[3].As<Napi::Number>().Int64Value())};
  return info.Env().Undefined();
}

// step(k, id) -> 0 or -errno, on the calling thread.
Napi::Value Step(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), raw_step(&gCtx, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value()));
}

// stepAsync(k, id) -> Promise<0 or -errno>, the step on the libuv pool. One at a time (raw-steps.h has one buffer).
class StepWorker : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, int k, int id) : Napi::AsyncWorker(env), k_(k), id_(id), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { rc_ = raw_step(&gCtx, k_, id_); }
  void OnOK() override { deferred_.Resolve(Napi::Number::New(Env(), rc_)); }

 private:
  int k_, id_, rc_ = 0;
  Napi::Promise::Deferred deferred_;
};

Napi::Value StepAsync(const Napi::CallbackInfo& info) {
  auto* w = new StepWorker(info.Env(), info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setup", Napi::Function::New(env, Setup));
  exports.Set("step", Napi::Function::New(env, Step));
  exports.Set("stepAsync", Napi::Function::New(env, StepAsync));
  return exports;
}

}  // namespace

NODE_API_MODULE(floor, Init)
