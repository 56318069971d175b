#include "blocking_thread.h"

#include <chrono>
#include <csignal>

namespace {
// A real-time signal nobody else in Node uses; its handler does nothing, its only effect is EINTR.
int WakeSignal() { return SIGRTMIN + 6; }
void OnWake(int) {}
}  // namespace

void InstallWakeSignal() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_handler = OnWake;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the blocked syscall must return EINTR
    sigaction(WakeSignal(), &sa, nullptr);
  });
}

void OnlyWakeSignal() {
  sigset_t set;
  sigfillset(&set);
  sigdelset(&set, WakeSignal());
  for (int fault : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP, SIGSYS}) sigdelset(&set, fault);
  pthread_sigmask(SIG_SETMASK, &set, nullptr);
}

void SendWakeSignal(pthread_t thread) { pthread_kill(thread, WakeSignal()); }

bool CancelBlocking(BlockingState& s, const std::string& reason) {
  std::unique_lock<std::mutex> lock(s.mutex);
  if (s.done) return false;
  if (!s.cancelled) s.reason = reason;
  s.cancelled = true;
  for (int i = 0; i < 100 && !s.done; i++) {
    SendWakeSignal(s.thread);  // safe: the thread cannot exit before it sets done under this mutex
    s.cv.wait_for(lock, std::chrono::milliseconds(2), [&] { return s.done; });
  }
  return true;
}
