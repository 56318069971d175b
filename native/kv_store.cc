// KvStore: a small binding of LMDB's C API for the volume registry (lib/thin/registry.ts), string keys and
// values, synchronous, main thread only. lmdb-js's own JS layer cost ~6 ms per registry write under emulation
// while LMDB itself, called from C, costs ~1 ms (probed in the guest), so the registry calls LMDB directly.
// The C sources come from the lmdb npm package (binding.gyp).
//
// Reads outside a write transaction each renew one reset read transaction, so they always see the last commit
// of any process. Inside begin()..commit() every call reads and writes that write transaction.
#include <lmdb.h>

#include <cerrno>
#include <string>

#include "addon.h"
#include "napi_ops.h"

namespace {

constexpr size_t kMapSize = size_t{16} << 30;  // address space only: the file grows with its pages

class KvStore : public Napi::ObjectWrap<KvStore> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "KvStore", {
      InstanceMethod<&KvStore::Begin>("begin"),
      InstanceMethod<&KvStore::Commit>("commit"),
      InstanceMethod<&KvStore::Abort>("abort"),
      InstanceMethod<&KvStore::Get>("get"),
      InstanceMethod<&KvStore::Put>("put"),
      InstanceMethod<&KvStore::Del>("del"),
      InstanceMethod<&KvStore::Range>("range"),
      InstanceMethod<&KvStore::Count>("count"),
      InstanceMethod<&KvStore::Close>("close"),
    });
  }

  // new KvStore(path): opens (creating) the LMDB file at path; its lock file is path + "-lock".
  explicit KvStore(const Napi::CallbackInfo& info) : Napi::ObjectWrap<KvStore>(info), path_(ArgString(info, 0)) {
    Napi::Env env = info.Env();
    Check(env, mdb_env_create(&env_), "mdb_env_create");
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
    if (rc != 0) {
      mdb_env_close(env_);
      env_ = nullptr;
      Check(env, rc, call);
    }
  }

  ~KvStore() override { Release(); }

 private:
  // One failure, through the error factory like every other: errno when LMDB gives one, else EIO (ENOSPC for
  // a full map) with LMDB's own words.
  void Check(Napi::Env env, int rc, const char* call) {
    if (rc == 0) return;
    int err = rc > 0 ? rc : rc == MDB_MAP_FULL ? ENOSPC : EIO;
    throw Napi::Error(env, MakeError(env, SysError{err, call, "registry", path_, rc < 0 ? mdb_strerror(rc) : ""}));
  }

  // Misuse of the store (no errno): the factory builds it like every other error.
  [[noreturn]] void Misuse(Napi::Env env, const char* what) {
    throw Napi::Error(env, MakeError(env, SysError{0, "", "registry", path_, what}));
  }

  void CheckOpen(Napi::Env env) {
    if (!env_) Misuse(env, "the registry store is closed");
  }

  // The transaction a read uses: the write transaction if one is open, else the renewed read transaction.
  MDB_txn* ReadTxn(Napi::Env env) {
    CheckOpen(env);
    if (write_) return write_;
    if (!read_) Check(env, Retried([&] { return mdb_txn_begin(env_, nullptr, MDB_RDONLY, &read_); }), "mdb_txn_begin");
    else Check(env, Retried([&] { return mdb_txn_renew(read_); }), "mdb_txn_renew");
    return read_;
  }
  void DoneReading() {
    if (!write_ && read_) mdb_txn_reset(read_);
  }
  MDB_txn* WriteTxn(Napi::Env env) {
    CheckOpen(env);
    if (!write_) Misuse(env, "a write outside a transaction");
    return write_;
  }

  // A reader slot may be wanted while dead processes hold them all (killed since this store was opened):
  // reclaim those and try once more.
  template <class Fn>
  int Retried(Fn fn) {
    int rc = fn();
    if (rc != MDB_READERS_FULL) return rc;
    int dead = 0;
    if (mdb_reader_check(env_, &dead) != 0 || dead == 0) return rc;
    return fn();
  }

  static MDB_val Val(const std::string& s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
  static Napi::String Str(Napi::Env env, const MDB_val& v) {
    return Napi::String::New(env, static_cast<const char*>(v.mv_data), v.mv_size);
  }

  Napi::Value Begin(const Napi::CallbackInfo& info) {
    CheckOpen(info.Env());
    if (write_) Misuse(info.Env(), "a write transaction is already open");
    Check(info.Env(), mdb_txn_begin(env_, nullptr, 0, &write_), "mdb_txn_begin");
    return info.Env().Undefined();
  }

  Napi::Value Commit(const Napi::CallbackInfo& info) {
    MDB_txn* txn = WriteTxn(info.Env());
    write_ = nullptr;
    int rc = mdb_txn_commit(txn);  // frees txn whatever it returns
    if (rc != MDB_EMPTY_TXN) Check(info.Env(), rc, "mdb_txn_commit");
    return info.Env().Undefined();
  }

  Napi::Value Abort(const Napi::CallbackInfo& info) {
    if (write_) mdb_txn_abort(write_);
    write_ = nullptr;
    return info.Env().Undefined();
  }

  // get(key): the value, or undefined.
  Napi::Value Get(const Napi::CallbackInfo& info) {
    std::string key = ArgString(info, 0);
    MDB_txn* txn = ReadTxn(info.Env());
    MDB_val k = Val(key), v;
    int rc = mdb_get(txn, dbi_, &k, &v);
    Napi::Value out = rc == 0 ? Napi::Value(Str(info.Env(), v)) : info.Env().Undefined();
    DoneReading();
    if (rc != MDB_NOTFOUND) Check(info.Env(), rc, "mdb_get");
    return out;
  }

  Napi::Value Put(const Napi::CallbackInfo& info) {
    std::string key = ArgString(info, 0), value = ArgString(info, 1);
    MDB_val k = Val(key), v = Val(value);
    Check(info.Env(), mdb_put(WriteTxn(info.Env()), dbi_, &k, &v, 0), "mdb_put");
    return info.Env().Undefined();
  }

  // del(key): whether it was there.
  Napi::Value Del(const Napi::CallbackInfo& info) {
    std::string key = ArgString(info, 0);
    MDB_val k = Val(key);
    int rc = mdb_del(WriteTxn(info.Env()), dbi_, &k, nullptr);
    if (rc != MDB_NOTFOUND) Check(info.Env(), rc, "mdb_del");
    return Napi::Boolean::New(info.Env(), rc == 0);
  }

  // Calls fn(key, value) for the keys that start with prefix, in order, until fn returns false.
  template <class Fn>
  void Scan(Napi::Env env, const std::string& prefix, Fn fn) {
    MDB_txn* txn = ReadTxn(env);
    MDB_cursor* cur = nullptr;
    int rc = mdb_cursor_open(txn, dbi_, &cur);
    MDB_val k = Val(prefix), v;
    if (rc == 0) rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size >= prefix.size() && prefix.compare(0, prefix.size(), static_cast<const char*>(k.mv_data), prefix.size()) == 0 &&
           fn(k, v))
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    if (cur) mdb_cursor_close(cur);
    DoneReading();
    if (rc != MDB_NOTFOUND) Check(env, rc, "mdb_cursor_get");
  }

  // range(prefix, limit?, keysOnly?): [key, value] pairs (or keys) of the keys that start with prefix, in order.
  Napi::Value Range(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    std::string prefix = ArgString(info, 0);
    uint32_t limit = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : UINT32_MAX;
    bool keysOnly = info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
    Napi::Array out = Napi::Array::New(env);
    uint32_t n = 0;
    if (limit == 0) return out;
    Scan(env, prefix, [&](const MDB_val& k, const MDB_val& v) {
      if (keysOnly) {
        out.Set(n++, Str(env, k));
      } else {
        Napi::Array pair = Napi::Array::New(env, 2);
        pair.Set(0u, Str(env, k));
        pair.Set(1u, Str(env, v));
        out.Set(n++, pair);
      }
      return n < limit;
    });
    return out;
  }

  // count(prefix): how many keys start with prefix.
  Napi::Value Count(const Napi::CallbackInfo& info) {
    std::string prefix = ArgString(info, 0);
    double n = 0;
    Scan(info.Env(), prefix, [&](const MDB_val&, const MDB_val&) { n++; return true; });
    return Napi::Number::New(info.Env(), n);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  void Release() {
    if (write_) mdb_txn_abort(write_);
    if (read_) mdb_txn_abort(read_);
    write_ = read_ = nullptr;
    if (env_) mdb_env_close(env_);
    env_ = nullptr;
  }

  std::string path_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  MDB_txn* write_ = nullptr;
  MDB_txn* read_ = nullptr;
};

}  // namespace

void RegisterKvStore(Napi::Env env, Napi::Object exports) {
  exports.Set("KvStore", KvStore::Define(env));
}
