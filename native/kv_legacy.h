// Reads a registry store written by lmdb-js's LMDB (its data version 2), the format of every registry made
// before the addon moved to upstream LMDB, so that kv_migrate.cc can copy it. Compiled against the copy in
// deps/lmdb-js-legacy, whose symbols are renamed legacy_*; this header names no LMDB type, so callers may
// include upstream's lmdb.h.
#pragma once
#include <string>
#include <utility>
#include <vector>

struct LegacyDb {
  bool named = false;  // false: the main (unnamed) database
  std::string name;
  unsigned flags = 0;  // its persistent flags (MDB_DUPSORT, MDB_INTEGERKEY, ...): the same values upstream
  std::vector<std::pair<std::string, std::string>> pairs;  // in key order, every duplicate of a DUPSORT key
};

// Every database in the file at path (opened MDB_NOSUBDIR, read-only, without its lock file: the caller makes
// sure no process has it open), main database first. Throws SysError (command "registry") on failure.
std::vector<LegacyDb> ReadLegacyStore(const std::string& path);
