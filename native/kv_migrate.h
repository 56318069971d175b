// Before the registry store opens its file with upstream LMDB: a file lmdb-js's LMDB wrote (data version 2,
// every registry made before the switch) is copied into upstream's format, once, under a lock; a file in a
// format neither knows is refused. Plain C++; throws SysError (command "registry").
//
// The copy is made in `<file>.migrating/` beside it, made durable, and renamed over the file; the old file is
// kept as `<file>.lmdbjs-v2.bak` (a hard link made before the rename). A crash leaves the old file in place
// (the next open starts again, removing the leftover folder) or the complete new one. The folder exists until
// the migration has finished: while it does, every opener waits for the lock.
#pragma once
#include <string>

// The suffixes of the backup and of the temporary folder, beside the file (lib/thin/pool-files.ts removes them).
inline constexpr const char* kLegacyBackupSuffix = ".lmdbjs-v2.bak";
inline constexpr const char* kMigratingSuffix = ".migrating";

void MigrateLegacyStore(const std::string& path);
