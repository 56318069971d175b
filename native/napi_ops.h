// How every native call is exposed: an Op parses its arguments on the main thread, Execute()s with no JS
// (inline for the sync twin, on the libuv pool for the promise), and turns its result into JS on the main
// thread. Kernel failures travel as SysError and become JS errors in one place (MakeError, in addon.cc).
#pragma once
#include <napi.h>

#include <cerrno>
#include <exception>

#include <string>
#include <type_traits>

#include "sys_error.h"

// An Op whose Result() writes into JS memory it was handed (a typed array) has Retain(info): called only when
// the Op outlives the JS call (promise, own thread), so the sync twin pays nothing for it.
template <class Op, class = void>
struct HasRetain : std::false_type {};
template <class Op>
struct HasRetain<Op, std::void_t<decltype(&Op::Retain)>> : std::true_type {};
template <class Op>
void RetainIfNeeded(Op& op, const Napi::CallbackInfo& info) {
  if constexpr (HasRetain<Op>::value) op.Retain(info);
}

// Builds the JS error for a SysError through the factory that lib/core/errors.ts registered.
Napi::Value MakeError(Napi::Env env, const SysError& e);
// A Napi::Error with nothing in it, thrown to leave a native call with an exception already thrown (or a
// thread being terminated): node-addon-api's wrapper then throws nothing.
Napi::Error UnwindOnly(Napi::Env env);
// Throws MakeError's error (as a C++ Napi::Error for node-addon-api to throw), or leaves a pending exception.
[[noreturn]] void ThrowSysError(Napi::Env env, const SysError& e);
// Rejects with MakeError's error (or the factory's exception); nothing when the thread is being terminated.
void RejectWithSysError(Napi::Env env, Napi::Promise::Deferred& deferred, const SysError& e);

// Runs fn() on the main thread, turning a SysError into the JS error the factory builds.
// Any other C++ exception (std::bad_alloc from a huge allocation, ...) becomes one SysError too: never
// std::terminate, never an error without a code.
inline SysError FromStdException(const std::exception& e) {
  return SysError{ENOMEM, "", "", "", e.what()};
}

template <class Fn>
auto CallJs(Napi::Env env, Fn fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const SysError& e) {
    ThrowSysError(env, e);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    ThrowSysError(env, FromStdException(e));
  }
}

template <class Op>
Napi::Value RunSync(const Napi::CallbackInfo& info) {
  Op op(info);
  CallJs(info.Env(), [&] { op.Execute(); });
  return op.Result(info.Env());
}

template <class Op>
class OpWorker : public Napi::AsyncWorker {
 public:
  explicit OpWorker(const Napi::CallbackInfo& info)
      : Napi::AsyncWorker(info.Env(), "devmapper"), op_(info), deferred_(Napi::Promise::Deferred::New(info.Env())) {
    RetainIfNeeded(op_, info);
  }
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      op_.Execute();
    } catch (const SysError& e) {
      error_ = e;
      failed_ = true;  // settled in OnOK, as BlockingJob does: the factory builds the error from error_
    } catch (const std::exception& e) {
      error_ = FromStdException(e);
      failed_ = true;
    }
  }
  void OnOK() override {
    if (failed_) RejectWithSysError(Env(), deferred_, error_);
    else deferred_.Resolve(op_.Result(Env()));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Op op_;
  Napi::Promise::Deferred deferred_;
  SysError error_;
  bool failed_ = false;
};

template <class Op>
Napi::Value RunAsync(const Napi::CallbackInfo& info) {
  auto* worker = new OpWorker<Op>(info);  // freed by node-addon-api after OnOK/OnError
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// Exports Op as `name` (the sync twin) and `nameAsync` (the promise, on the libuv pool).
template <class Op>
void ExportBoth(Napi::Env env, Napi::Object exports, const char* name) {
  exports.Set(name, Napi::Function::New(env, RunSync<Op>, name));
  std::string async = std::string(name) + "Async";
  exports.Set(async, Napi::Function::New(env, RunAsync<Op>, async));
}

// Argument readers: cheap checks; lib/ validated the values already, these only guard the native boundary.
inline std::string ArgString(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsString()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}
inline int ArgInt(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number");
  return info[i].As<Napi::Number>().Int32Value();
}
inline Napi::Object ArgObject(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsObject()) throw Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be an object");
  return info[i].As<Napi::Object>();
}
// A non-negative integer up to 2^53 (sizes, offsets); Number because JS callers use Number for sectors.
inline uint64_t GetU64(Napi::Object o, const char* key, uint64_t dflt = 0) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (v.IsBigInt()) { bool lossless; return v.As<Napi::BigInt>().Uint64Value(&lossless); }
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < 0 || d > 9007199254740991.0) throw Napi::RangeError::New(o.Env(), std::string(key) + " out of range");
  return uint64_t(d);
}
inline bool GetBool(Napi::Object o, const char* key) { return o.Get(key).ToBoolean().Value(); }
