// The reader of kv_legacy.h. The renaming header comes first, so every LMDB call here is the legacy copy's.
#include "../deps/lmdb-js-legacy/lmdb_legacy_names.h"
#include "../deps/lmdb-js-legacy/lmdb.h"

#include "kv_legacy.h"

#include <cerrno>
#include <cstring>

#include "sys_error.h"

namespace {

constexpr unsigned kPersistentFlags = MDB_REVERSEKEY | MDB_DUPSORT | MDB_INTEGERKEY | MDB_DUPFIXED | MDB_INTEGERDUP | MDB_REVERSEDUP;
// Named databases to look for: the registry itself makes none.
constexpr unsigned kMaxDbs = 64;

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {}
  ~Reader() {
    if (txn_) mdb_txn_abort(txn_);
    if (env_) mdb_env_close(env_);
  }

  std::vector<LegacyDb> Read() {
    Check(mdb_env_create(&env_), "mdb_env_create");
    Check(mdb_env_set_maxdbs(env_, kMaxDbs), "mdb_env_set_maxdbs");
    Check(mdb_env_open(env_, path_.c_str(), MDB_NOSUBDIR | MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600), "mdb_env_open");
    Check(mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn_), "mdb_txn_begin");
    std::vector<LegacyDb> out(1);
    MDB_dbi main;
    Check(mdb_dbi_open(txn_, nullptr, 0, &main), "mdb_dbi_open");
    std::vector<std::string> names;
    ReadDb(main, out[0], &names);
    for (const std::string& name : names) {
      MDB_dbi dbi;
      Check(mdb_dbi_open(txn_, name.c_str(), 0, &dbi), "mdb_dbi_open");
      LegacyDb& db = out.emplace_back();
      db.named = true;
      db.name = name;
      ReadDb(dbi, db, nullptr);
    }
    return out;
  }

 private:
  // A key of the main database that opens as a database is one: named databases are recorded there, under
  // their name with its terminating NUL in this copy (upstream's key has none).
  bool IsNamedDb(const MDB_val& k) {
    const char* p = static_cast<const char*>(k.mv_data);
    if (k.mv_size < 2 || p[k.mv_size - 1] != 0 || memchr(p, 0, k.mv_size - 1)) return false;
    std::string name(p, k.mv_size - 1);
    MDB_dbi dbi;
    int rc = mdb_dbi_open(txn_, name.c_str(), 0, &dbi);
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) return false;
    Check(rc, "mdb_dbi_open");
    return true;
  }

  void ReadDb(MDB_dbi dbi, LegacyDb& db, std::vector<std::string>* names) {
    Check(mdb_dbi_flags(txn_, dbi, &db.flags), "mdb_dbi_flags");
    db.flags &= kPersistentFlags;
    MDB_cursor* cur = nullptr;
    Check(mdb_cursor_open(txn_, dbi, &cur), "mdb_cursor_open");
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
      if (names && IsNamedDb(k)) {
        names->emplace_back(static_cast<const char*>(k.mv_data), k.mv_size - 1);
        continue;
      }
      db.pairs.emplace_back(std::string(static_cast<const char*>(k.mv_data), k.mv_size),
                            std::string(static_cast<const char*>(v.mv_data), v.mv_size));
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) Check(rc, "mdb_cursor_get");
    MDB_stat st;
    Check(mdb_stat(txn_, dbi, &st), "mdb_stat");
    if (st.ms_entries != db.pairs.size() + (names ? names->size() : 0))
      throw SysError{EIO, "", "registry", path_, "lmdb-js's LMDB file: the database holds more records than its cursor read"};
  }

  void Check(int rc, const char* call) const {
    if (rc == 0) return;
    throw SysError{rc > 0 ? rc : EIO, call, "registry", path_, std::string("lmdb-js's LMDB: ") + (rc < 0 ? mdb_strerror(rc) : "")};
  }

  std::string path_;
  MDB_env* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
};

}  // namespace

std::vector<LegacyDb> ReadLegacyStore(const std::string& path) { return Reader(path).Read(); }
