#include "kv_migrate.h"

#include <dirent.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "kv_legacy.h"
#include "kv_store.h"
#include "sys_error.h"
#include "raw_syscalls.h"

namespace {

constexpr uint32_t kMagic = 0xBEEFC0DE;
// Where page 0 keeps its meta's mm_magic and mm_version (the next 32-bit word): after the page header. Upstream
// 0.9's header is pgno, pad, flags, lower/upper (MDB_page); lmdb-js's puts a txnid after the pgno
// (MDB_page_header). Both are pgno_t/size_t wide on Linux.
constexpr size_t kUpstreamMeta = sizeof(size_t) + 8;
constexpr size_t kLegacyMeta = 2 * sizeof(size_t) + 8;
constexpr uint32_t kUpstreamVersion = 1;
constexpr uint32_t kLegacyVersion = 2;  // lmdb-js keeps flags above the low 16 bits

enum class Format { kUpstream, kLegacy };

struct Fd {
  int fd;
  ~Fd() { if (fd >= 0) close(fd); }
};

[[noreturn]] void Fail(int err, const char* syscall, const std::string& target, std::string detail = "") {
  throw SysError{err, syscall, "registry", target, std::move(detail)};
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string BaseOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool Exists(const std::string& path) {
  struct stat st;
  if (SysLstat(path.c_str(), &st) == 0) return true;
  if (errno != ENOENT) Fail(errno, "lstat", path);
  return false;
}

void Unlink(const std::string& path) {
  if (unlink(path.c_str()) != 0 && errno != ENOENT) Fail(errno, "unlink", path);
}

void Fsync(const std::string& path, int flags) {
  Fd f{open(path.c_str(), flags | O_CLOEXEC)};
  if (f.fd < 0) Fail(errno, "open", path);
  if (fsync(f.fd) != 0) Fail(errno, "fsync", path);
}

// The format of the file at path, from its first meta page. A missing or empty file is a new store, and
// anything else that is not one of the two (no magic, not a regular file) is left to upstream LMDB to refuse:
// all count as upstream's.
Format Detect(const std::string& path) {
  Fd f{open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (f.fd < 0) {
    if (errno == ENOENT) return Format::kUpstream;
    Fail(errno, "open", path);
  }
  struct stat st;
  if (SysFstat(f.fd, &st) != 0) Fail(errno, "fstat", path);
  if (!S_ISREG(st.st_mode)) return Format::kUpstream;
  unsigned char head[kLegacyMeta + 8];
  ssize_t n = pread(f.fd, head, sizeof head, 0);
  if (n < 0) Fail(errno, "pread", path);
  if (size_t(n) < sizeof head) return Format::kUpstream;
  auto word = [&](size_t off) { uint32_t v; memcpy(&v, head + off, sizeof v); return v; };
  if (word(kUpstreamMeta) == kMagic) {
    if (word(kUpstreamMeta + 4) == kUpstreamVersion) return Format::kUpstream;
    Fail(0, "", path, "the file is in LMDB data version " + std::to_string(word(kUpstreamMeta + 4)) +
         ", which this devmapper cannot read (it reads version " + std::to_string(kUpstreamVersion) + ")");
  }
  if (word(kLegacyMeta) == kMagic) {
    if ((word(kLegacyMeta + 4) & 0xffff) == kLegacyVersion) return Format::kLegacy;
    Fail(0, "", path, "the file is in lmdb-js's LMDB data version " + std::to_string(word(kLegacyMeta + 4) & 0xffff) +
         ", which this devmapper cannot read or migrate (it migrates version " + std::to_string(kLegacyVersion) + ")");
  }
  return Format::kUpstream;
}

// Empties and removes the temporary folder a migration killed midway left (only its own files are there).
void RemoveTemp(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) {
    if (errno == ENOENT) return;
    Fail(errno, "opendir", dir);
  }
  for (struct dirent* e; (e = readdir(d));) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT) {
      int err = errno;
      closedir(d);
      Fail(err, "unlink", dir + "/" + e->d_name);
    }
  }
  closedir(d);
  if (rmdir(dir.c_str()) != 0 && errno != ENOENT) Fail(errno, "rmdir", dir);
}

// Writes every database of the old file into a new upstream file, in one transaction; commit is durable
// (data fdatasync'd, meta written through a synchronous fd), and the env is synced again before close.
void WriteUpstream(const std::string& file, const std::vector<LegacyDb>& dbs) {
  MDB_env* env = nullptr;
  MDB_txn* txn = nullptr;
  auto check = [&](int rc, const char* call) {
    if (rc == 0) return;
    if (txn) mdb_txn_abort(txn);
    if (env) mdb_env_close(env);
    Fail(rc > 0 ? rc : rc == MDB_MAP_FULL ? ENOSPC : EIO, call, file, rc < 0 ? mdb_strerror(rc) : "");
  };
  check(mdb_env_create(&env), "mdb_env_create");
  check(mdb_env_set_mapsize(env, LmdbStore::kMapSize), "mdb_env_set_mapsize");
  check(mdb_env_set_maxdbs(env, MDB_dbi(dbs.size())), "mdb_env_set_maxdbs");
  // No lock file: only this process, under the migration lock, knows the file.
  check(mdb_env_open(env, file.c_str(), MDB_NOSUBDIR | MDB_NOLOCK | MDB_NOTLS, 0600), "mdb_env_open");
  check(mdb_txn_begin(env, nullptr, 0, &txn), "mdb_txn_begin");
  for (const LegacyDb& db : dbs) {
    MDB_dbi dbi;
    check(mdb_dbi_open(txn, db.named ? db.name.c_str() : nullptr, db.flags | (db.named ? MDB_CREATE : 0), &dbi), "mdb_dbi_open");
    for (const auto& [key, value] : db.pairs) {
      MDB_val k{key.size(), const_cast<char*>(key.data())}, v{value.size(), const_cast<char*>(value.data())};
      check(mdb_put(txn, dbi, &k, &v, 0), "mdb_put");
    }
    MDB_stat st;
    check(mdb_stat(txn, dbi, &st), "mdb_stat");
    // The main database is written first: the records of the named ones are not in it yet.
    if (st.ms_entries != db.pairs.size()) check(MDB_CORRUPTED, "mdb_stat");
  }
  int rc = mdb_txn_commit(txn);
  txn = nullptr;
  check(rc, "mdb_txn_commit");
  check(mdb_env_sync(env, 1), "mdb_env_sync");
  mdb_env_close(env);
}

void Migrate(const std::string& path, const std::string& tmp) {
  const std::string dir = DirOf(path), lockFile = path + "-lock", backup = path + kLegacyBackupSuffix;
  // An earlier devmapper with the old file open takes a shared fcntl lock on byte 0 of its lock file for as
  // long as it has it open, and waits for one to open it: holding the write lock here, on a lock of the open
  // file description (kept whatever else this process closes), shuts them out until the swap is done.
  Fd lk{open(lockFile.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)};
  if (lk.fd < 0) Fail(errno, "open", lockFile);
  struct flock fl = {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  if (fcntl(lk.fd, F_OFD_SETLK, &fl) != 0) {
    if (errno == EAGAIN || errno == EACCES)
      Fail(EBUSY, "", path, "the registry is in lmdb-js's LMDB format and a process (an earlier devmapper) has it open: "
           "it is migrated to upstream LMDB's format once no process has it open");
    Fail(errno, "fcntl", lockFile);
  }
  if (mkdir(tmp.c_str(), 0700) != 0) Fail(errno, "mkdir", tmp);
  Fsync(dir, O_RDONLY | O_DIRECTORY);
  const std::string fresh = tmp + "/" + BaseOf(path);
  WriteUpstream(fresh, ReadLegacyStore(path));
  Fsync(tmp, O_RDONLY | O_DIRECTORY);
  // The backup is a second name of the old file, made before the rename: at no point is there no registry.
  Unlink(backup);
  if (link(path.c_str(), backup.c_str()) != 0) Fail(errno, "link", backup);
  if (rename(fresh.c_str(), path.c_str()) != 0) Fail(errno, "rename", path);
  Fsync(dir, O_RDONLY | O_DIRECTORY);
  // The old lock file is in lmdb-js's lock format: upstream's first opener makes a new one.
  Unlink(lockFile);
  Fsync(dir, O_RDONLY | O_DIRECTORY);
}

}  // namespace

void MigrateLegacyStore(const std::string& path) {
  const std::string tmp = path + kMigratingSuffix;
  if (Detect(path) != Format::kLegacy && !Exists(tmp)) return;
  // One migration at a time across processes: flock on the folder the file is in (no file of its own to leave).
  const std::string dir = DirOf(path);
  Fd d{open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (d.fd < 0) Fail(errno, "open", dir);
  while (flock(d.fd, LOCK_EX) != 0)
    if (errno != EINTR) Fail(errno, "flock", dir);
  bool leftover = Exists(tmp);
  if (leftover) RemoveTemp(tmp);
  if (Detect(path) == Format::kLegacy) {
    Migrate(path, tmp);
    RemoveTemp(tmp);
  } else if (leftover) {
    // Killed after the rename: no process has opened the new file since (every opener waits while the folder
    // is there), so a lock file left is the old one, in lmdb-js's format.
    Unlink(path + "-lock");
  }
  Fsync(dir, O_RDONLY | O_DIRECTORY);
}
