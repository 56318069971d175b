// An exclusive inter-process lock: flock(LOCK_EX) on a lock file. The promise form waits on a thread of its
// own (another process may hold the lock for long) and can be cancelled; release is closing the fd.
#include <cerrno>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "addon.h"
#include "blocking_thread.h"

namespace {
struct LockFileOp {
  std::string path;
  int fd = -1;
  explicit LockFileOp(const Napi::CallbackInfo& info) : path(ArgString(info, 0)) {}
  void Execute() {
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw SysError{errno, "open", "flock", path, ""};
    if (flock(fd, LOCK_EX) < 0) {
      int err = errno;
      close(fd);
      fd = -1;
      throw SysError{err, "flock", "flock", path, ""};
    }
  }
  Napi::Value Result(Napi::Env env) { return Napi::Number::New(env, fd); }
};

// tryLockFile(path): the fd holding the lock, or -1 if another process holds it (no thread, no wait).
Napi::Value TryLockFile(const Napi::CallbackInfo& info) {
  std::string path = ArgString(info, 0);
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw Napi::Error(info.Env(), MakeError(info.Env(), SysError{errno, "open", "flock", path, ""}));
  if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) return Napi::Number::New(info.Env(), -1);
    throw Napi::Error(info.Env(), MakeError(info.Env(), SysError{err, "flock", "flock", path, ""}));
  }
  return Napi::Number::New(info.Env(), fd);
}
}  // namespace

void RegisterFileLock(Napi::Env env, Napi::Object exports) {
  exports.Set("tryLockFile", Napi::Function::New(env, TryLockFile, "tryLockFile"));
  exports.Set("lockFile", Napi::Function::New(env, RunSync<LockFileOp>, "lockFile"));
  exports.Set("lockFileAsync", Napi::Function::New(env, RunOnOwnThread<LockFileOp>, "lockFileAsync"));
}
