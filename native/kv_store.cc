#include "kv_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "kv_migrate.h"
#include "sys_error.h"

namespace {

MDB_val Val(const std::string& s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view View(const MDB_val& v) { return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size); }

// A reader slot may be wanted while dead processes hold them all (killed since this store was opened):
// reclaim those and try once more.
template <class Fn>
int Retried(MDB_env* env, Fn fn) {
  int rc = fn();
  if (rc != MDB_READERS_FULL) return rc;
  int dead = 0;
  if (mdb_reader_check(env, &dead) != 0 || dead == 0) return rc;
  return fn();
}

}  // namespace

// One LMDB environment per file per process, shared by the stores of every thread (the main thread's and the
// offload worker's, lib/thin/offload.ts): LMDB must not open a file twice in one process (a second open's
// close drops the first's locks). Keyed by the file's device and inode, so a file deleted and made again under
// the same name gets an environment of its own. Each store keeps its own transactions; two threads' write
// transactions queue on the environment's writer lock, as two processes' do.
struct SharedEnv {
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  int refs = 0;
};

namespace {

std::mutex envs_mutex;
std::vector<SharedEnv*> envs;

SharedEnv* FindEnv(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return nullptr;
  for (SharedEnv* e : envs)
    if (e->dev == st.st_dev && e->ino == st.st_ino) return e;
  return nullptr;
}

}  // namespace

LmdbStore::LmdbStore(std::string path) : path_(std::move(path)) {
  std::lock_guard<std::mutex> hold(envs_mutex);
  if (SharedEnv* e = FindEnv(path_)) {
    e->refs++;
    shared_ = e;
    env_ = e->env;
    dbi_ = e->dbi;
    return;
  }
  MigrateLegacyStore(path_);
  Check(mdb_env_create(&env_), "mdb_env_create");
  const char* call = "mdb_env_set_mapsize";
  int rc = mdb_env_set_mapsize(env_, kMapSize);
  if (rc == 0) { call = "mdb_env_open"; rc = mdb_env_open(env_, path_.c_str(), MDB_NOSUBDIR | MDB_NOTLS, 0600); }
  // Reader slots of processes that died (SIGKILL) are never given back by themselves: once all are taken,
  // every new reader fails with MDB_READERS_FULL. Reclaim them at each open.
  if (rc == 0) { call = "mdb_reader_check"; int dead = 0; rc = mdb_reader_check(env_, &dead); }
  MDB_txn* txn = nullptr;
  if (rc == 0) { call = "mdb_txn_begin"; rc = mdb_txn_begin(env_, nullptr, 0, &txn); }
  if (rc == 0) { call = "mdb_dbi_open"; rc = mdb_dbi_open(txn, nullptr, 0, &dbi_); }
  if (txn) mdb_txn_abort(txn);  // the main (unnamed) database's handle outlives the transaction
  struct stat st;
  if (rc == 0 && stat(path_.c_str(), &st) != 0) { call = "stat"; rc = errno; }
  if (rc != 0) {
    mdb_env_close(env_);
    env_ = nullptr;
    Check(rc, call);
  }
  shared_ = new SharedEnv{env_, dbi_, st.st_dev, st.st_ino, 1};
  envs.push_back(shared_);
}

// One failure: errno when LMDB gives one, else EIO (ENOSPC for a full map) with LMDB's own words.
void LmdbStore::Check(int rc, const char* call) const {
  if (rc == 0) return;
  int err = rc > 0 ? rc : rc == MDB_MAP_FULL ? ENOSPC : EIO;
  throw SysError{err, call, "registry", path_, rc < 0 ? mdb_strerror(rc) : ""};
}

// Misuse of the store (no errno).
void LmdbStore::Misuse(const char* what) const {
  throw SysError{0, "", "registry", path_, what};
}

void LmdbStore::CheckOpen() const {
  if (!env_) Misuse("the registry store is closed");
}

// The transaction a read uses: the write transaction if one is open, else the renewed read transaction.
MDB_txn* LmdbStore::ReadTxn() {
  CheckOpen();
  if (write_) return write_;
  if (!read_) Check(Retried(env_, [&] { return mdb_txn_begin(env_, nullptr, MDB_RDONLY, &read_); }), "mdb_txn_begin");
  else Check(Retried(env_, [&] { return mdb_txn_renew(read_); }), "mdb_txn_renew");
  return read_;
}

void LmdbStore::DoneReading() {
  if (!write_ && read_) mdb_txn_reset(read_);
}

MDB_txn* LmdbStore::WriteTxn() {
  CheckOpen();
  if (!write_) Misuse("a write outside a transaction");
  return write_;
}

void LmdbStore::Begin() {
  CheckOpen();
  if (write_) Misuse("a write transaction is already open");
  Check(mdb_txn_begin(env_, nullptr, 0, &write_), "mdb_txn_begin");
}

void LmdbStore::Commit() {
  MDB_txn* txn = WriteTxn();
  write_ = nullptr;
  Check(mdb_txn_commit(txn), "mdb_txn_commit");  // frees txn whatever it returns
}

void LmdbStore::Abort() {
  if (write_) mdb_txn_abort(write_);
  write_ = nullptr;
}

std::optional<std::string> LmdbStore::Get(const std::string& key) {
  MDB_txn* txn = ReadTxn();
  MDB_val k = Val(key), v;
  int rc = mdb_get(txn, dbi_, &k, &v);
  std::optional<std::string> out;
  if (rc == 0) out.emplace(View(v));  // copied while the transaction still holds the page
  DoneReading();
  if (rc != MDB_NOTFOUND) Check(rc, "mdb_get");
  return out;
}

void LmdbStore::Put(const std::string& key, const std::string& value) {
  MDB_val k = Val(key), v = Val(value);
  Check(mdb_put(WriteTxn(), dbi_, &k, &v, 0), "mdb_put");
}

bool LmdbStore::Del(const std::string& key) {
  MDB_val k = Val(key);
  int rc = mdb_del(WriteTxn(), dbi_, &k, nullptr);
  if (rc != MDB_NOTFOUND) Check(rc, "mdb_del");
  return rc == 0;
}

void LmdbStore::Scan(const std::string& prefix, const ScanFn& fn) {
  MDB_txn* txn = ReadTxn();
  MDB_cursor* cur = nullptr;
  int rc = mdb_cursor_open(txn, dbi_, &cur);
  MDB_val k = Val(prefix), v;
  if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
  while (rc == 0 && k.mv_size >= prefix.size() && prefix.compare(0, prefix.size(), static_cast<const char*>(k.mv_data), prefix.size()) == 0 &&
         fn(View(k), View(v)))
    rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  if (cur) mdb_cursor_close(cur);
  DoneReading();
  if (rc != MDB_NOTFOUND) Check(rc, "mdb_cursor_get");
}

size_t LmdbStore::Count(const std::string& prefix) {
  size_t n = 0;
  Scan(prefix, [&](std::string_view, std::string_view) { n++; return true; });
  return n;
}

size_t LmdbStore::LastTxn() {
  CheckOpen();
  MDB_envinfo info;
  Check(mdb_env_info(env_, &info), "mdb_env_info");
  return info.me_last_txnid;
}

bool LmdbStore::ApplyIf(size_t base, const Batch& batch) {
  std::lock_guard<std::mutex> hold(applying_);
  CheckOpen();
  MDB_txn* txn = nullptr;
  // A write transaction's id is the last commit's plus one (LMDB's txnid).
  Check(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
  if (mdb_txn_id(txn) != base + 1) {
    mdb_txn_abort(txn);
    return false;
  }
  int rc = 0;
  const char* call = "mdb_put";
  for (const auto& [key, value] : batch) {
    MDB_val k = Val(key);
    if (value) {
      MDB_val v = Val(*value);
      rc = mdb_put(txn, dbi_, &k, &v, 0);
    } else {
      call = "mdb_del";
      rc = mdb_del(txn, dbi_, &k, nullptr);
      if (rc == MDB_NOTFOUND) rc = 0;
    }
    if (rc != 0) break;
  }
  if (rc != 0) {
    mdb_txn_abort(txn);
    Check(rc, call);
  }
  Check(mdb_txn_commit(txn), "mdb_txn_commit");  // frees txn whatever it returns
  return true;
}

void LmdbStore::Close() {
  std::lock_guard<std::mutex> hold(applying_);
  if (write_) mdb_txn_abort(write_);
  if (read_) mdb_txn_abort(read_);
  write_ = read_ = nullptr;
  env_ = nullptr;
  if (!shared_) return;
  std::lock_guard<std::mutex> holdEnvs(envs_mutex);
  if (--shared_->refs == 0) {
    mdb_env_close(shared_->env);
    envs.erase(std::find(envs.begin(), envs.end(), shared_));
    delete shared_;
  }
  shared_ = nullptr;
}
