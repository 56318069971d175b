// Calls that may block without bound (DM_DEV_WAIT, poll on the control fd) run on a thread of their own,
// never on the libuv pool, and can be cancelled: cancel() interrupts the syscall with a signal that has a
// no-op handler installed without SA_RESTART, so the call returns EINTR and the promise rejects ECANCELED.
#pragma once
#include <napi.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <pthread.h>
#include <string>
#include <thread>

#include "napi_ops.h"

void InstallWakeSignal();
void SendWakeSignal(pthread_t thread);

struct BlockingState {
  std::mutex mutex;
  std::condition_variable cv;
  pthread_t thread{};
  bool done = false;
  bool cancelled = false;
  // Why it was cancelled ("timeout 50", "abort", "close"): the error factory builds the one error from it.
  std::string reason;
};

// Cancels a running call; bounded: re-sends the signal for at most ~200 ms in case it landed just before the
// thread entered the syscall. Returns false if the call had already finished.
bool CancelBlocking(BlockingState& s, const std::string& reason);

// The calling thread (one of our own) takes no signal but the wake signal (and synchronous faults): threads
// inherit the main thread's mask, and a process-directed signal, such as SIGCHLD when a child exits, may be
// delivered to any thread that does not block it, where it would end a DM_DEV_WAIT or a timed suspend with an
// EINTR nobody asked for.
void OnlyWakeSignal();

template <class Op>
struct BlockingJob {
  Op op;
  SysError error;
  bool failed = false;
  std::shared_ptr<BlockingState> state = std::make_shared<BlockingState>();
  Napi::Promise::Deferred deferred;
  explicit BlockingJob(const Napi::CallbackInfo& i) : op(i), deferred(Napi::Promise::Deferred::New(i.Env())) {
    RetainIfNeeded(op, i);
  }

  // Runs on the main thread once the call returned.
  static void Settle(Napi::Env env, Napi::Function, void*, BlockingJob* job) {
    if (env != nullptr) {
      if (job->failed) RejectWithSysError(env, job->deferred, job->error);
      else job->deferred.Resolve(job->op.Result(env));
    }
    delete job;
  }
};

// Returns {promise, cancel()} for an Op run on its own thread.
template <class Op>
Napi::Value RunOnOwnThread(const Napi::CallbackInfo& info) {
  using Job = BlockingJob<Op>;
  using Tsfn = Napi::TypedThreadSafeFunction<void, Job, &Job::Settle>;
  Napi::Env env = info.Env();
  InstallWakeSignal();
  Job* job = new Job(info);
  std::shared_ptr<BlockingState> state = job->state;
  Napi::Promise promise = job->deferred.Promise();
  Tsfn tsfn = Tsfn::New(env, "devmapper-blocking", 0, 1);

  std::unique_lock<std::mutex> lock(state->mutex);  // the thread waits until its handle is stored
  std::thread t([job, tsfn]() mutable {
    OnlyWakeSignal();
    bool cancelled;
    { std::lock_guard<std::mutex> g(job->state->mutex); cancelled = job->state->cancelled; }
    try {
      if (cancelled) throw SysError{EINTR, "", "", "", ""};
      job->op.Execute();
    } catch (const SysError& e) {
      job->failed = true;
      job->error = e;
    } catch (const std::exception& e) {
      job->failed = true;
      job->error = FromStdException(e);
    }
    {
      std::lock_guard<std::mutex> g(job->state->mutex);
      job->state->done = true;
      if (job->failed && job->state->cancelled) {
        job->error.err = ECANCELED;
        job->error.detail = job->state->reason;
      }
    }
    job->state->cv.notify_all();
    tsfn.BlockingCall(job);
    tsfn.Release();
  });
  state->thread = t.native_handle();
  t.detach();
  lock.unlock();

  Napi::Object result = Napi::Object::New(env);
  result.Set("promise", promise);
  result.Set("cancel", Napi::Function::New(env, [state](const Napi::CallbackInfo& i) {
    std::string reason = i.Length() > 0 && i[0].IsString() ? i[0].As<Napi::String>().Utf8Value() : "cancelled";
    return Napi::Boolean::New(i.Env(), CancelBlocking(*state, reason));
  }));
  return result;
}
