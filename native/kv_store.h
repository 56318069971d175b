// LmdbStore: a small binding of LMDB's C API for the volume registry (lib/thin/registry.ts), string keys and
// values, synchronous, used from the addon's main thread, but for ApplyIf (a batch, on a pool thread). The registry calls LMDB directly
// (JS class in kv_store_addon.cc): a JS layer over it cost several times what LMDB does. The C sources are
// vendored in deps/lmdb (binding.gyp). Every commit is durable (LMDB's default: data pages fdatasync'd, the
// meta page written through a synchronous fd); the registry's commit protocol depends on it.
//
// Reads outside a write transaction each renew one reset read transaction, so they always see the last commit
// of any process. Inside Begin()..Commit() every call reads and writes that write transaction.
//
// Plain C++; every failure is a SysError with command "registry" and the store's path as target: errno when
// LMDB gives one, else EIO (ENOSPC for a full map) with LMDB's own words as detail; misuse (a closed store, a
// write outside a transaction, a second Begin()) has errno 0 and says which in detail.
#pragma once
#include <lmdb.h>

#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct SharedEnv;

class LmdbStore {
 public:
  // The map's size: address space only, the file grows with its pages.
  static constexpr size_t kMapSize = size_t{16} << 30;

  // Opens (creating) the LMDB file at path; its lock file is path + "-lock". A file in lmdb-js's format is
  // migrated first (kv_migrate.h). Reclaims the reader slots of dead processes. The environment is shared with
  // every other store of this process on the same file, whatever thread made it (see SharedEnv).
  explicit LmdbStore(std::string path);
  ~LmdbStore() { Close(); }
  LmdbStore(const LmdbStore&) = delete;
  LmdbStore& operator=(const LmdbStore&) = delete;

  // Opens the one write transaction; every call until Commit() or Abort() reads and writes in it.
  void Begin();
  void Commit();
  // Drops the write transaction, if any; never fails.
  void Abort();
  // The value, or nothing.
  std::optional<std::string> Get(const std::string& key);
  // Only inside a write transaction.
  void Put(const std::string& key, const std::string& value);
  // Whether the key was there. Only inside a write transaction.
  bool Del(const std::string& key);
  // Calls fn(key, value) for the keys that start with prefix, in order, until fn returns false. The views are
  // LMDB's memory: valid only during the call.
  using ScanFn = std::function<bool(std::string_view key, std::string_view value)>;
  void Scan(const std::string& prefix, const ScanFn& fn);
  // How many keys start with prefix.
  size_t Count(const std::string& prefix);
  // Aborts any transaction and closes the file; later calls fail as misuse. Idempotent. Waits for a batch
  // that ApplyIf is writing on another thread.
  void Close();

  // The id of the last commit of any process.
  size_t LastTxn();
  // Keys to put (with a value) or delete (without).
  using Batch = std::vector<std::pair<std::string, std::optional<std::string>>>;
  // One durable write transaction of its own, for the promise API's commits, which run it off the main thread
  // (the only call that may): writes `batch` if no commit of any process landed since `base` (LastTxn() when
  // the batch was worked out from the store's reads), and says whether it did; nothing is written if one did.
  bool ApplyIf(size_t base, const Batch& batch);

 private:
  void Check(int rc, const char* call) const;
  [[noreturn]] void Misuse(const char* what) const;
  void CheckOpen() const;
  MDB_txn* ReadTxn();
  void DoneReading();
  MDB_txn* WriteTxn();

  std::string path_;
  SharedEnv* shared_ = nullptr;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  MDB_txn* write_ = nullptr;
  MDB_txn* read_ = nullptr;
  std::mutex applying_;  // held by ApplyIf; Close() takes it, so env_ outlives a batch in flight
};
