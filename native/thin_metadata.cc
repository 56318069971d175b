#include "thin_metadata.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <linux/fs.h>
#include <memory>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>

#include "crc32c.h"
#include "sys_error.h"
#include "raw_syscalls.h"

namespace {

constexpr size_t kBlock = 4096;
constexpr uint64_t kMagic = 27022010;
constexpr uint32_t kSuperblockSalt = 160774;
constexpr uint32_t kNodeSalt = 121107;
constexpr uint32_t kBitmapSalt = 240779;
constexpr uint32_t kIndexSalt = 160478;
constexpr uint64_t kEntriesPerBitmap = 16320;  // 2-bit counts after a 16-byte header
constexpr uint64_t kMaxMetadataIndexEntries = 255;
constexpr uint32_t kIndexEntrySize = 16;  // disk_index_entry
// Superblock field offsets (thin-metadata.md §1): the reader and the needs_check writer share them.
constexpr size_t kSbFlags = 4;
constexpr uint32_t kInternal = 1, kLeaf = 2;
constexpr uint32_t kNeedsCheck = 1;
constexpr int kMaxDepth = 16;  // the kernel's DM_BTREE_CURSOR_MAX_DEPTH
constexpr uint32_t kDetailsValueSize = 24;
constexpr uint32_t kMappingValueSize = 8;

uint32_t Le32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t Le64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

[[noreturn]] void Corrupt(const std::string& path, uint64_t block, const std::string& check) {
  SysError e{0, "", "metadata", path, check};
  e.block = int64_t(block);
  e.check = check;
  throw e;
}

// The metadata device or image, read in 4 KiB blocks with O_DIRECT: the pool writes through its own buffers,
// so the page cache of the device node is stale. A file on a filesystem without O_DIRECT is read buffered.
class BlockReader {
 public:
  BlockReader(const std::string& path, bool exclusive, bool writable = false) : path_(path) {
    int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC | (exclusive ? O_EXCL : 0);
    fd_ = open(path.c_str(), flags | O_DIRECT);
    if (fd_ < 0 && errno == EINVAL) fd_ = open(path.c_str(), flags);
    if (fd_ < 0) throw SysError{errno, "open", "metadata", path, ""};
    struct stat st;
    if (SysFstat(fd_, &st) < 0) Fail("fstat");
    uint64_t bytes = 0;
    if (S_ISBLK(st.st_mode)) {
      if (ioctl(fd_, BLKGETSIZE64, &bytes) < 0) Fail("ioctl");
    } else if (S_ISREG(st.st_mode)) {
      bytes = uint64_t(st.st_size);
    } else {
      close(fd_);
      throw SysError{ENOTBLK, "open", "metadata", path, "neither a block device nor a file"};
    }
    blocks_ = bytes / kBlock;
    void* p = nullptr;
    if (posix_memalign(&p, kBlock, kBlock) != 0) { close(fd_); throw SysError{ENOMEM, "posix_memalign", "metadata", path, ""}; }
    buf_.reset(static_cast<uint8_t*>(p));
  }
  ~BlockReader() { close(fd_); }
  BlockReader(const BlockReader&) = delete;
  BlockReader& operator=(const BlockReader&) = delete;

  uint64_t blocks() const { return blocks_; }
  const std::string& path() const { return path_; }

  // Block b into out (kBlock bytes); any I/O error or short read is an error.
  void Read(uint64_t b, uint8_t* out) {
    if (b >= blocks_) Corrupt(path_, b, "block number beyond the metadata device");
    size_t done = 0;
    while (done < kBlock) {
      ssize_t n = pread(fd_, buf_.get() + done, kBlock - done, off_t(b * kBlock + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw SysError{errno, "pread", "metadata", path_, "block " + std::to_string(b)};
      if (n == 0) throw SysError{EIO, "pread", "metadata", path_, "short read at block " + std::to_string(b)};
      done += size_t(n);
    }
    std::memcpy(out, buf_.get(), kBlock);
  }

  // Block b from `in` (kBlock bytes), then fsync: the write is durable when this returns.
  void Write(uint64_t b, const uint8_t* in) {
    if (b >= blocks_) Corrupt(path_, b, "block number beyond the metadata device");
    std::memcpy(buf_.get(), in, kBlock);
    size_t done = 0;
    while (done < kBlock) {
      ssize_t n = pwrite(fd_, buf_.get() + done, kBlock - done, off_t(b * kBlock + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw SysError{errno, "pwrite", "metadata", path_, "block " + std::to_string(b)};
      if (n == 0) throw SysError{EIO, "pwrite", "metadata", path_, "short write at block " + std::to_string(b)};
      done += size_t(n);
    }
    if (fsync(fd_) < 0) throw SysError{errno, "fsync", "metadata", path_, ""};
  }

 private:
  [[noreturn]] void Fail(const char* call) {
    int err = errno;
    close(fd_);
    throw SysError{err, call, "metadata", path_, ""};
  }
  struct Free { void operator()(uint8_t* p) const { std::free(p); } };
  std::string path_;
  int fd_ = -1;
  uint64_t blocks_ = 0;
  std::unique_ptr<uint8_t, Free> buf_;
};

using Block = std::array<uint8_t, kBlock>;

// The checksum every block carries at offset 0 (thin-metadata.md: the kernel's crc32c without its final
// inversion, xor the block type's salt); the reader verifies it, the superblock writer sets it.
uint32_t ChecksumOf(const uint8_t* b, uint32_t salt) { return ~Crc32c(b + 4, kBlock - 4) ^ salt; }

bool ChecksumOk(const uint8_t* b, uint32_t salt) {
  return Le32(b) == ChecksumOf(b, salt);
}

MetaSuperblock ParseSuperblock(const std::string& path, const uint8_t* b, uint64_t location) {
  if (!ChecksumOk(b, kSuperblockSalt)) Corrupt(path, location, "superblock checksum");
  MetaSuperblock s;
  s.location = Le64(b + 8);
  if (s.location != location) Corrupt(path, location, "superblock block number");
  if (Le64(b + 32) != kMagic) Corrupt(path, location, "superblock magic");
  s.flags = Le32(b + kSbFlags);
  s.version = Le32(b + 40);
  if (s.version != 1 && s.version != 2) Corrupt(path, location, "superblock version " + std::to_string(s.version));
  if (s.flags & ~kNeedsCheck) Corrupt(path, location, "unknown superblock flags");
  s.time = Le32(b + 44);
  s.transactionId = Le64(b + 48);
  s.heldRoot = Le64(b + 56);
  s.dataSpace = {Le64(b + 64), Le64(b + 72), Le64(b + 80), Le64(b + 88)};
  s.metadataSpace = {Le64(b + 192), Le64(b + 200), Le64(b + 208), Le64(b + 216)};
  s.mappingRoot = Le64(b + 320);
  s.detailsRoot = Le64(b + 328);
  s.dataBlockSize = Le32(b + 336);
  if (Le32(b + 340) != 8) Corrupt(path, location, "metadata block size is not 8 sectors");
  if (s.dataBlockSize < 128 || s.dataBlockSize > 2097152 || s.dataBlockSize % 128 != 0)
    Corrupt(path, location, "data block size " + std::to_string(s.dataBlockSize));
  s.metadataNrBlocks = Le64(b + 344);
  s.compatFlags = Le32(b + 352);
  s.compatRoFlags = Le32(b + 356);
  s.incompatFlags = Le32(b + 360);
  if (s.incompatFlags != 0) Corrupt(path, location, "unknown incompat features");
  return s;
}

// One btree node, verified: header, bounds, value size, key order.
struct Node {
  uint64_t block = 0;
  bool leaf = false;
  uint32_t nr = 0, max = 0, valueSize = 0;
  Block data;
  uint64_t Key(uint32_t i) const { return Le64(data.data() + 32 + 8 * size_t(i)); }
  const uint8_t* Value(uint32_t i) const { return data.data() + 32 + 8 * size_t(max) + size_t(valueSize) * i; }
  uint64_t Child(uint32_t i) const { return Le64(Value(i)); }
};

// Reads the metadata through one superblock view, with the limits every block number and value must meet.
class Metadata {
 public:
  Metadata(const std::string& path, const MetaReadOptions& o) : io_(path, o.exclusive, o.writable) {
    Block& b = block0_;
    // Block 0 is rewritten in place at every commit: a torn read fails its checksum; read it again.
    for (int attempt = 0;; attempt++) {
      io_.Read(0, b.data());
      if (ChecksumOk(b.data(), kSuperblockSalt) || attempt == 4) break;
    }
    live_ = ParseSuperblock(path, b.data(), 0);
    metaLimit_ = std::min<uint64_t>(io_.blocks(), live_.metadataSpace.nrBlocks);
    if (metaLimit_ == 0) Corrupt(path, 0, "metadata space map holds no blocks");
    dataLimit_ = live_.dataSpace.nrBlocks;
    if (o.view == MetaView::Held) {
      uint64_t held = live_.heldRoot;
      if (held == 0) Corrupt(path, 0, "no metadata snapshot is held");
      if (o.expectHeldRoot != 0 && held != o.expectHeldRoot)
        Corrupt(path, 0, "the held metadata snapshot is at block " + std::to_string(held) + ", not " + std::to_string(o.expectHeldRoot));
      CheckBlockNumber(held, 0, "held root");
      Block copy;
      io_.Read(held, copy.data());
      view_ = ParseSuperblock(path, copy.data(), held);
    } else {
      view_ = live_;
    }
    CheckBlockNumber(view_.mappingRoot, view_.location, "mapping tree root");
    CheckBlockNumber(view_.detailsRoot, view_.location, "device details tree root");
  }

  const MetaSuperblock& live() const { return live_; }
  const MetaSuperblock& view() const { return view_; }
  const std::string& path() const { return io_.path(); }
  uint64_t deviceBlocks() const { return io_.blocks(); }
  uint64_t dataLimit() const { return dataLimit_; }
  uint64_t metaLimit() const { return metaLimit_; }
  uint64_t reads() const { return reads_; }
  // Block 0 as the superblock above was parsed from.
  const Block& block0() const { return block0_; }
  BlockReader& io() { return io_; }

  // Reads block `b` and verifies its checksum with `salt` and its own block number.
  void ReadChecked(uint64_t b, uint32_t salt, const char* what, Block& out) {
    io_.Read(b, out.data());
    reads_++;
    if (!ChecksumOk(out.data(), salt)) Corrupt(path(), b, std::string(what) + " checksum");
    if (Le64(out.data() + 8) != b) Corrupt(path(), b, std::string(what) + " block number");
  }

  void CheckBlockNumber(uint64_t b, uint64_t from, const char* what) const {
    if (b == 0 || b >= metaLimit_) Corrupt(path(), from, std::string(what) + " points at block " + std::to_string(b) + ", outside the metadata");
  }

  // Reads and verifies node `block`; leaves must hold values of leafValueSize bytes.
  void ReadNode(uint64_t block, uint32_t leafValueSize, Node& n) {
    if (block == 0 || block >= metaLimit_) Corrupt(path(), block, "btree node outside the metadata");
    io_.Read(block, n.data.data());
    reads_++;
    const uint8_t* d = n.data.data();
    if (!ChecksumOk(d, kNodeSalt)) Corrupt(path(), block, "btree node checksum");
    if (Le64(d + 8) != block) Corrupt(path(), block, "btree node block number");
    uint32_t flags = Le32(d + 4);
    if (flags != kInternal && flags != kLeaf) Corrupt(path(), block, "btree node flags");
    n.block = block;
    n.leaf = flags == kLeaf;
    n.nr = Le32(d + 16);
    n.max = Le32(d + 20);
    n.valueSize = Le32(d + 24);
    uint32_t want = n.leaf ? leafValueSize : 8;
    if (n.valueSize != want) Corrupt(path(), block, "btree node value size " + std::to_string(n.valueSize) + ", expected " + std::to_string(want));
    if (n.max == 0 || 32 + uint64_t(n.max) * (8 + n.valueSize) > kBlock) Corrupt(path(), block, "btree node max_entries");
    if (n.nr > n.max) Corrupt(path(), block, "btree node nr_entries above max_entries");
    for (uint32_t i = 1; i < n.nr; i++)
      if (n.Key(i) <= n.Key(i - 1)) Corrupt(path(), block, "btree keys not ascending");
  }

 private:
  BlockReader io_;
  Block block0_;
  MetaSuperblock live_, view_;
  uint64_t metaLimit_ = 0, dataLimit_ = 0, reads_ = 0;
};

// Verifies that node n fits the key range [lo, hi) its parent gives it, and is not an empty non-root node.
void CheckRange(const Metadata& m, const Node& n, uint64_t lo, uint64_t hi, bool root) {
  if (n.nr == 0) {
    if (!root || !n.leaf) Corrupt(m.path(), n.block, "empty btree node below the root");
    return;
  }
  if (n.Key(0) < lo || n.Key(n.nr - 1) >= hi) Corrupt(m.path(), n.block, "btree keys outside the range the parent gives");
}

constexpr uint64_t kNoBound = ~uint64_t(0);

// Walks one single-level tree in key order, calling leaf(key, value) for each entry. Every block once per
// tree (a repeated block is a cycle, or a DAG built to blow the walk up), depth at most kMaxDepth.
template <class Fn>
void WalkTree(Metadata& m, uint64_t root, uint32_t valueSize, Fn leaf) {
  std::unordered_set<uint64_t> seen;
  struct Walker {
    Metadata& m;
    uint32_t valueSize;
    Fn& leaf;
    std::unordered_set<uint64_t>& seen;
    bool started = false;
    uint64_t last = 0;
    void Visit(uint64_t block, uint64_t lo, uint64_t hi, int depth, bool root) {
      if (depth > kMaxDepth) Corrupt(m.path(), block, "btree deeper than " + std::to_string(kMaxDepth));
      if (!seen.insert(block).second) Corrupt(m.path(), block, "btree block reached twice in one tree");
      Node n;
      m.ReadNode(block, valueSize, n);
      CheckRange(m, n, lo, hi, root);
      for (uint32_t i = 0; i < n.nr; i++) {
        uint64_t k = n.Key(i);
        if (n.leaf) {
          if (started && k <= last) Corrupt(m.path(), block, "btree keys not ascending across leaves");
          started = true;
          last = k;
          leaf(k, n.Value(i), n.block);
        } else {
          m.CheckBlockNumber(n.Child(i), block, "btree child");
          Visit(n.Child(i), k, i + 1 < n.nr ? n.Key(i + 1) : hi, depth + 1, false);
        }
      }
    }
  } w{m, valueSize, leaf, seen};
  w.Visit(root, 0, kNoBound, 1, true);
}

// Device details and the top-level mapping tree: the same ids, with each device's mapping root.
struct Devices {
  std::vector<ThinDeviceFacts> facts;
  std::vector<uint64_t> roots;
};

Devices ReadDevices(Metadata& m) {
  Devices d;
  WalkTree(m, m.view().detailsRoot, kDetailsValueSize, [&](uint64_t id, const uint8_t* v, uint64_t block) {
    ThinDeviceFacts f;
    if (id > 0xFFFFFF) Corrupt(m.path(), block, "thin id beyond 2^24 - 1");  // the kernel's limit
    f.id = id;
    f.mappedBlocks = Le64(v);
    f.transactionId = Le64(v + 8);
    f.creationTime = Le32(v + 16);
    f.snapshottedTime = Le32(v + 20);
    d.facts.push_back(f);
  });
  size_t i = 0;
  WalkTree(m, m.view().mappingRoot, 8, [&](uint64_t id, const uint8_t* v, uint64_t block) {
    if (i >= d.facts.size() || d.facts[i].id != id)
      Corrupt(m.path(), block, "thin id " + std::to_string(id) + " has a mapping tree but no device details");
    uint64_t root = Le64(v);
    m.CheckBlockNumber(root, block, "thin device mapping root");
    d.roots.push_back(root);
    i++;
  });
  if (i != d.facts.size())
    Corrupt(m.path(), m.view().detailsRoot, "thin id " + std::to_string(d.facts[i].id) + " has device details but no mapping tree");
  return d;
}

uint64_t DataBlockOf(const Metadata& m, const uint8_t* v, uint64_t block) {
  uint64_t data = Le64(v) >> 24;
  if (data >= m.dataLimit()) Corrupt(m.path(), block, "mapping to data block " + std::to_string(data) + " beyond the data device");
  return data;
}

// How many mappings in the view use each data block: 0, 1, or 2 for "more than one"; two bits a block up to
// 2^30 blocks (256 MiB), a map beyond (hostile or huge data devices).
class DataUse {
 public:
  // Dense up to 2^27 blocks (32 MiB of counts: an 8 TiB pool of 64 KiB blocks); beyond, memory follows the
  // mappings read, not a count hostile metadata could set.
  explicit DataUse(uint64_t blocks) : dense_(blocks <= (uint64_t(1) << 27)) {
    if (dense_) bits_.assign(size_t((blocks + 3) / 4), 0);
  }
  void Add(uint64_t b, uint64_t times) {
    uint8_t c = Get(b);
    if (c < 2) Set(b, uint8_t(std::min<uint64_t>(2, c + std::min<uint64_t>(times, 2))));
  }
  bool Once(uint64_t b) const { return Get(b) == 1; }

 private:
  uint8_t Get(uint64_t b) const {
    if (dense_) return (bits_[size_t(b / 4)] >> (2 * (b % 4))) & 3;
    auto it = sparse_.find(b);
    return it == sparse_.end() ? 0 : it->second;
  }
  void Set(uint64_t b, uint8_t c) {
    if (!dense_) { sparse_[b] = c; return; }
    uint8_t& byte = bits_[size_t(b / 4)];
    byte = uint8_t((byte & ~(3 << (2 * (b % 4)))) | (c << (2 * (b % 4))));
  }
  bool dense_;
  std::vector<uint8_t> bits_;
  std::unordered_map<uint64_t, uint8_t> sparse_;
};

// Every device's mapped, exclusive and highest block, reading each distinct node of the mapping trees once
// per pass. Devices share whole subtrees (create_snap shares the origin's root), so the trees form a DAG:
// nodes are taken level by level from the roots down (a node's children sit one level lower; a btree's
// leaves are all at one depth), each with the number of paths that reach it. A leaf reached by k paths
// counts each of its data blocks k times.
void ComputeUsage(Metadata& m, Devices& d) {
  struct Info {
    uint64_t paths = 0;
    uint64_t lo = 0, hi = kNoBound;  // the intersection of the key ranges its parents give
    int height = -1;
    bool root = false;  // some device's root (it may also sit inside another device's tree)
    std::vector<uint64_t> children;  // internal nodes
    uint64_t mapped = 0, exclusive = 0;
    int64_t highest = -1;
  };
  std::unordered_map<uint64_t, Info> nodes;
  // The height of each root: the number of levels below it (a leaf: 0), found down the first children.
  std::vector<std::vector<uint64_t>> levels(kMaxDepth);
  Node n;
  for (uint64_t root : d.roots) {
    auto [it, fresh] = nodes.try_emplace(root);
    Info& info = it->second;
    info.paths = std::min<uint64_t>(info.paths + 1, uint64_t(1) << 62);
    info.root = true;
    if (!fresh) continue;
    int height = 0;
    for (uint64_t b = root;; height++) {
      if (height >= kMaxDepth) Corrupt(m.path(), root, "btree deeper than " + std::to_string(kMaxDepth));
      m.ReadNode(b, kMappingValueSize, n);
      if (n.leaf) break;
      if (n.nr == 0) Corrupt(m.path(), b, "empty internal btree node");
      b = n.Child(0);
      m.CheckBlockNumber(b, n.block, "btree child");
    }
    info.height = height;
    levels[size_t(height)].push_back(root);
  }
  // Down: paths and key ranges, level by level (a root is never also another tree's inner node at another
  // height: heights must agree).
  for (int h = kMaxDepth - 1; h >= 1; h--) {
    for (uint64_t b : levels[size_t(h)]) {
      m.ReadNode(b, kMappingValueSize, n);
      Info& info = nodes[b];
      if (n.leaf) Corrupt(m.path(), b, "a leaf where the tree's depth needs an internal node");
      CheckRange(m, n, info.lo, info.hi, info.root);
      if (n.nr == 0) Corrupt(m.path(), b, "empty internal btree node");
      std::unordered_set<uint64_t> mine;
      for (uint32_t i = 0; i < n.nr; i++) {
        uint64_t c = n.Child(i);
        m.CheckBlockNumber(c, b, "btree child");
        if (!mine.insert(c).second) Corrupt(m.path(), c, "btree block reached twice in one tree");
        uint64_t lo = n.Key(i), hi = i + 1 < n.nr ? n.Key(i + 1) : info.hi;
        info.children.push_back(c);
        auto [it, fresh] = nodes.try_emplace(c);
        Info& ci = it->second;
        if (fresh) {
          ci.height = h - 1;
          ci.lo = lo;
          ci.hi = hi;
          levels[size_t(h - 1)].push_back(c);
        } else {
          if (ci.height != h - 1) Corrupt(m.path(), c, "btree node reached at two depths");
          ci.lo = std::max(ci.lo, lo);
          ci.hi = std::min(ci.hi, hi);
        }
        ci.paths = std::min<uint64_t>(ci.paths + info.paths, uint64_t(1) << 62);
      }
    }
  }
  // Leaves, read twice (memory stays per node, not per mapping): both passes check what they use, so a file
  // rewritten in between cannot send DataUse out of bounds.
  auto readLeaf = [&](uint64_t b) -> Info& {
    m.ReadNode(b, kMappingValueSize, n);
    Info& info = nodes[b];
    if (!n.leaf) Corrupt(m.path(), b, "an internal node where the tree's depth needs a leaf");
    CheckRange(m, n, info.lo, info.hi, info.root);
    // The highest mapped block is kept as an int64 (-1: none), and no real virtual block comes near 2^63 (its
    // sector would pass 2^64): refused, rather than read as a negative highest that hides the mapping.
    if (n.nr && n.Key(n.nr - 1) > uint64_t(INT64_MAX)) Corrupt(m.path(), b, "mapped virtual block beyond 2^63");
    return info;
  };
  // First pass: how many mappings use each data block.
  DataUse use(m.dataLimit());
  for (uint64_t b : levels[0]) {
    Info& info = readLeaf(b);
    for (uint32_t i = 0; i < n.nr; i++) use.Add(DataBlockOf(m, n.Value(i), b), info.paths);
  }
  // Second pass: exclusive mappings per leaf, then sums up the levels.
  for (uint64_t b : levels[0]) {
    Info& info = readLeaf(b);
    info.mapped = n.nr;
    info.highest = n.nr ? int64_t(n.Key(n.nr - 1)) : -1;
    if (info.paths == 1)
      for (uint32_t i = 0; i < n.nr; i++) info.exclusive += use.Once(DataBlockOf(m, n.Value(i), b));
  }
  for (int h = 1; h < kMaxDepth; h++) {
    for (uint64_t b : levels[size_t(h)]) {
      Info& info = nodes[b];
      for (uint64_t c : info.children) {
        const Info& ci = nodes[c];
        info.mapped += ci.mapped;
        info.exclusive += ci.exclusive;
        info.highest = std::max(info.highest, ci.highest);
      }
    }
  }
  for (size_t i = 0; i < d.roots.size(); i++) {
    const Info& info = nodes[d.roots[i]];
    d.facts[i].mapped = info.mapped;
    d.facts[i].exclusive = info.paths == 1 ? info.exclusive : 0;
    d.facts[i].highest = info.highest;
  }
}

uint64_t RootOf(Metadata& m, uint64_t id) {
  // A lookup in the top-level mapping tree, verified node by node.
  uint64_t b = m.view().mappingRoot, lo = 0, hi = kNoBound;
  Node n;
  for (int depth = 1;; depth++) {
    if (depth > kMaxDepth) Corrupt(m.path(), b, "btree deeper than " + std::to_string(kMaxDepth));
    m.ReadNode(b, 8, n);
    CheckRange(m, n, lo, hi, depth == 1);
    uint32_t i = 0;
    bool found = false;
    for (uint32_t j = 0; j < n.nr && n.Key(j) <= id; j++) { i = j; found = true; }
    if (!found) break;
    if (n.leaf) {
      if (n.Key(i) != id) break;
      uint64_t root = Le64(n.Value(i));
      m.CheckBlockNumber(root, b, "thin device mapping root");
      return root;
    }
    lo = n.Key(i);
    hi = i + 1 < n.nr ? n.Key(i + 1) : hi;
    b = n.Child(i);
    m.CheckBlockNumber(b, n.block, "btree child");
  }
  throw SysError{ENODATA, "", "metadata", m.path(), "no thin device " + std::to_string(id) + " in the metadata"};
}

// The mappings of one device tree in key order, from a starting key; verifies what it reads as WalkTree does.
class MappingCursor {
 public:
  MappingCursor(Metadata& m, uint64_t root, uint64_t from) : m_(m) {
    Descend(root, 0, kNoBound, from, true);
    Settle();
  }
  bool done() const { return stack_.empty(); }
  uint64_t key() const { return Top().node.Key(Top().index); }
  uint64_t data() const { return DataBlockOf(m_, Top().node.Value(Top().index), Top().node.block); }
  void Next() {
    Top().index++;
    Settle();
  }

 private:
  struct Frame {
    Node node;
    uint32_t index = 0;
    uint64_t hi = kNoBound;
  };
  Frame& Top() { return *stack_.back(); }
  const Frame& Top() const { return *stack_.back(); }

  // Pushes node `block` and, while internal, the child holding `from` (or the first one at or after it).
  void Descend(uint64_t block, uint64_t lo, uint64_t hi, uint64_t from, bool root) {
    for (;;) {
      if (stack_.size() >= size_t(kMaxDepth)) Corrupt(m_.path(), block, "btree deeper than " + std::to_string(kMaxDepth));
      if (!seen_.insert(block).second) Corrupt(m_.path(), block, "btree block reached twice in one tree");
      auto f = std::make_unique<Frame>();
      m_.ReadNode(block, kMappingValueSize, f->node);
      CheckRange(m_, f->node, lo, hi, root);
      f->hi = hi;
      const Node& n = f->node;
      uint32_t i = 0;
      if (n.leaf) {
        while (i < n.nr && n.Key(i) < from) i++;
      } else {
        while (i + 1 < n.nr && n.Key(i + 1) <= from) i++;
      }
      // An internal node's slot i is used by the descent below: its next child comes after.
      f->index = n.leaf ? i : i + 1;
      stack_.push_back(std::move(f));
      if (n.leaf || n.nr == 0) return;
      root = false;
      lo = n.Key(i);
      hi = i + 1 < n.nr ? n.Key(i + 1) : hi;
      block = n.Child(i);
      m_.CheckBlockNumber(block, n.block, "btree child");
    }
  }

  // Moves to the next existing mapping: pops finished nodes and descends into the next child.
  void Settle() {
    while (!stack_.empty()) {
      Frame& f = Top();
      if (f.index < f.node.nr) {
        if (f.node.leaf) {
          uint64_t k = f.node.Key(f.index);
          if (started_ && k <= last_) Corrupt(m_.path(), f.node.block, "btree keys not ascending across leaves");
          started_ = true;
          last_ = k;
          return;
        }
        const Node& n = f.node;
        uint32_t i = f.index;
        uint64_t child = n.Child(i);
        m_.CheckBlockNumber(child, n.block, "btree child");
        f.index++;  // the parent's slot is used up; the child's entries come next
        Descend(child, n.Key(i), i + 1 < n.nr ? n.Key(i + 1) : f.hi, 0, false);
        continue;
      }
      stack_.pop_back();
    }
  }

  Metadata& m_;
  std::vector<std::unique_ptr<Frame>> stack_;
  std::unordered_set<uint64_t> seen_;
  bool started_ = false;
  uint64_t last_ = 0;
};

// ---- space maps (thin-metadata.md §3), for the full check before needs_check is cleared ----------------

struct BitmapCounts {
  uint64_t allocated = 0;  // entries with a count above 0
  uint64_t overflow = 0;   // entries of count 3: the rest of the count is in the ref-count tree
};

// Verifies bitmap block `b` and counts its first `entries` entries (those within nr_blocks).
void CountBitmap(Metadata& m, uint64_t b, uint64_t from, uint64_t entries, BitmapCounts& c) {
  m.CheckBlockNumber(b, from, "space map bitmap");
  Block d;
  m.ReadChecked(b, kBitmapSalt, "space map bitmap", d);
  for (uint64_t j = 0; j < entries; j++) {
    uint64_t w = Le64(d.data() + 16 + 8 * (j / 32));
    unsigned s = unsigned(2 * (j % 32));
    unsigned count = unsigned(((w >> s) & 1) << 1 | ((w >> (s + 1)) & 1));  // the lower bit is the high one
    if (count) c.allocated++;
    if (count == 3) c.overflow++;
  }
}

uint64_t BitmapsFor(uint64_t nrBlocks) { return (nrBlocks + kEntriesPerBitmap - 1) / kEntriesPerBitmap; }
uint64_t EntriesIn(uint64_t nrBlocks, uint64_t bitmap) { return std::min(kEntriesPerBitmap, nrBlocks - bitmap * kEntriesPerBitmap); }

// The counts the bitmaps give must agree with the root: its allocated count, and a ref-count tree entry (a
// count of 3 or more, for a block within the map) for every bitmap entry of 3.
void CheckCounts(Metadata& m, const MetaSpaceMap& sm, const BitmapCounts& c, const char* which) {
  if (c.allocated != sm.nrAllocated)
    Corrupt(m.path(), 0, std::string(which) + " space map: the bitmaps allocate " + std::to_string(c.allocated) +
                             " blocks, its root says " + std::to_string(sm.nrAllocated));
  m.CheckBlockNumber(sm.refCountRoot, 0, "reference count tree root");
  uint64_t big = 0;
  WalkTree(m, sm.refCountRoot, 4, [&](uint64_t block, const uint8_t* v, uint64_t node) {
    if (block >= sm.nrBlocks) Corrupt(m.path(), node, std::string(which) + " reference count beyond the space map");
    if (Le32(v) >= 3) big++;
  });
  if (big < c.overflow)
    Corrupt(m.path(), sm.refCountRoot, std::string(which) + " space map: " + std::to_string(c.overflow - big) +
                                           " blocks of count 3 or more have no reference count");
}

void CheckSpaceMaps(Metadata& m) {
  const MetaSuperblock& sb = m.live();
  // Metadata: one index block naming each bitmap.
  const MetaSpaceMap& meta = sb.metadataSpace;
  uint64_t n = BitmapsFor(meta.nrBlocks);
  if (n > kMaxMetadataIndexEntries) Corrupt(m.path(), 0, "metadata space map larger than its index block holds");
  m.CheckBlockNumber(meta.bitmapRoot, 0, "metadata space map index");
  Block index;
  m.ReadChecked(meta.bitmapRoot, kIndexSalt, "metadata space map index", index);
  BitmapCounts mc;
  for (uint64_t i = 0; i < n; i++)
    CountBitmap(m, Le64(index.data() + 16 + kIndexEntrySize * i), meta.bitmapRoot, EntriesIn(meta.nrBlocks, i), mc);
  CheckCounts(m, meta, mc, "metadata");
  // Data: an index btree keyed by bitmap number, every one present.
  const MetaSpaceMap& data = sb.dataSpace;
  m.CheckBlockNumber(data.bitmapRoot, 0, "data space map index");
  uint64_t next = 0;
  BitmapCounts dc;
  uint64_t bitmaps = BitmapsFor(data.nrBlocks);
  WalkTree(m, data.bitmapRoot, kIndexEntrySize, [&](uint64_t key, const uint8_t* v, uint64_t node) {
    if (key != next || key >= bitmaps) Corrupt(m.path(), node, "data space map index entry " + std::to_string(key) + " out of place");
    CountBitmap(m, Le64(v), node, EntriesIn(data.nrBlocks, key), dc);
    next++;
  });
  if (next != bitmaps) Corrupt(m.path(), data.bitmapRoot, "data space map index misses bitmap " + std::to_string(next));
  CheckCounts(m, data, dc, "data");
}

}  // namespace

MetaReport ReadThinMetadata(const std::string& path, const MetaReadOptions& o, bool usage) {
  Metadata m(path, o);
  Devices d = ReadDevices(m);
  if (usage) ComputeUsage(m, d);
  MetaReport r;
  r.live = m.live();
  r.view = m.view();
  r.deviceBlocks = m.deviceBlocks();
  r.devices = std::move(d.facts);
  return r;
}

DiffChunk DiffThinDevices(const std::string& path, const MetaReadOptions& o, uint64_t a, uint64_t b, uint64_t from,
                          size_t maxRanges, uint64_t maxMappings) {
  Metadata m(path, o);
  uint64_t rootA = RootOf(m, a), rootB = RootOf(m, b);
  DiffChunk out;
  out.dataBlockSize = m.view().dataBlockSize;
  if (rootA == rootB) {  // one tree: nothing differs
    out.done = true;
    return out;
  }
  MappingCursor left(m, rootA, from), right(m, rootB, from);
  bool open = false;
  DiffRange cur{DiffKind::LeftOnly, 0, 0};
  uint64_t read = 0;
  auto close = [&] {
    if (open) out.ranges.push_back(cur);
    open = false;
  };
  while (!left.done() || !right.done()) {
    uint64_t k;
    bool haveLeft = false, haveRight = false;
    if (left.done()) k = right.key();
    else if (right.done()) k = left.key();
    else k = std::min(left.key(), right.key());
    haveLeft = !left.done() && left.key() == k;
    haveRight = !right.done() && right.key() == k;
    if (read >= maxMappings || out.ranges.size() >= maxRanges) {
      close();
      out.next = k;
      return out;
    }
    bool same = false;
    DiffKind kind = DiffKind::Different;
    if (haveLeft && haveRight) same = left.data() == right.data();
    else kind = haveLeft ? DiffKind::LeftOnly : DiffKind::RightOnly;
    if (same) {
      close();
    } else if (open && cur.kind == kind && cur.begin + cur.length == k) {
      cur.length++;
    } else {
      close();
      cur = DiffRange{kind, k, 1};
      open = true;
    }
    if (haveLeft) { left.Next(); read++; }
    if (haveRight) { right.Next(); read++; }
  }
  close();
  out.done = true;
  return out;
}

NeedsCheckRepair ClearNeedsCheck(const std::string& path) {
  MetaReadOptions o;
  o.exclusive = true;  // no pool may hold it: the kernel would rewrite block 0 over us
  o.writable = true;
  Metadata m(path, o);
  NeedsCheckRepair r;
  // Everything the reader can verify: the details and every mapping tree (the usage walk reads each node of
  // each device's tree and bounds each data block), a held snapshot's copy, and the space maps.
  Devices d = ReadDevices(m);
  ComputeUsage(m, d);
  if (m.live().heldRoot != 0) {
    m.CheckBlockNumber(m.live().heldRoot, 0, "held root");
    Block copy;
    m.io().Read(m.live().heldRoot, copy.data());
    MetaSuperblock h = ParseSuperblock(path, copy.data(), m.live().heldRoot);
    m.CheckBlockNumber(h.mappingRoot, h.location, "mapping tree root");
    m.CheckBlockNumber(h.detailsRoot, h.location, "device details tree root");
  }
  CheckSpaceMaps(m);
  r.report.live = m.live();
  r.report.view = m.view();
  r.report.deviceBlocks = m.deviceBlocks();
  r.report.devices = std::move(d.facts);
  if (!(m.live().flags & kNeedsCheck)) return r;
  // Block 0 again: it must still be the superblock checked above (nothing else holds the device).
  Block b;
  m.io().Read(0, b.data());
  if (std::memcmp(b.data(), m.block0().data(), kBlock) != 0) Corrupt(path, 0, "superblock changed during the check");
  uint32_t flags = Le32(b.data() + kSbFlags) & ~kNeedsCheck;
  std::memcpy(b.data() + kSbFlags, &flags, 4);
  uint32_t csum = ChecksumOf(b.data(), kSuperblockSalt);
  std::memcpy(b.data(), &csum, 4);
  m.io().Write(0, b.data());
  Block back;
  m.io().Read(0, back.data());
  MetaSuperblock after = ParseSuperblock(path, back.data(), 0);
  if (after.flags & kNeedsCheck) Corrupt(path, 0, "needs_check still set after the write");
  r.wasSet = true;
  return r;
}
