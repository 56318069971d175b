// An exclusive inter-process lock: flock(LOCK_EX) on a lock file, opened (created 0600) close-on-exec. Release
// is closing the returned fd. Plain C++, callable from any thread; throws SysError (command "flock").
#pragma once
#include <string>

// Waits until the lock is held; returns the fd that holds it. A signal ends the wait with EINTR (how the own
// thread's wait is cancelled, blocking_thread.h).
int LockFile(const std::string& path);
// The lock without waiting: the fd that holds it, or -1 if another process holds it.
int TryLockFile(const std::string& path);
