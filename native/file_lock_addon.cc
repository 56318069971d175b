// JS entry points for the inter-process lock (file_lock.h). The promise form waits on a thread of its own
// (another process may hold the lock for long) and can be cancelled.
#include "addon.h"
#include "blocking_thread.h"
#include "file_lock.h"
#include "napi_ops.h"

namespace {
// lockFile(path) / lockFileAsync(path): the fd holding the lock, once it is held.
struct LockFileOp {
  std::string path;
  int fd = -1;
  explicit LockFileOp(const Napi::CallbackInfo& info) : path(ArgString(info, 0)) {}
  void Execute() { fd = LockFile(path); }
  Napi::Value Result(Napi::Env env) { return Napi::Number::New(env, fd); }
};

// tryLockFile(path): the fd holding the lock, or -1 if another process holds it (no thread, no wait).
struct TryLockFileOp {
  std::string path;
  int fd = -1;
  explicit TryLockFileOp(const Napi::CallbackInfo& info) : path(ArgString(info, 0)) {}
  void Execute() { fd = TryLockFile(path); }
  Napi::Value Result(Napi::Env env) { return Napi::Number::New(env, fd); }
};
}  // namespace

void RegisterFileLock(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLockFile", Napi::Function::New(env, RunSync<TryLockFileOp>, "tryLockFile"));
  exports.Set("lockFile", Napi::Function::New(env, RunSync<LockFileOp>, "lockFile"));
  exports.Set("lockFileAsync", Napi::Function::New(env, RunOnOwnThread<LockFileOp>, "lockFileAsync"));
}
