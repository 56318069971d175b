// JS entry points for the thin-pool metadata reader (thin_metadata.h): argument parsing and result objects.
#include <string>

#include "addon.h"
#include "napi_ops.h"
#include "thin_metadata.h"

namespace {

constexpr uint64_t kMaxSafe = 9007199254740991ull;  // 2^53 - 1

MetaReadOptions ReadOptions(const Napi::CallbackInfo& info, size_t i) {
  Napi::Object o = ArgObject(info, i);
  MetaReadOptions r;
  r.view = GetBool(o, "held") ? MetaView::Held : MetaView::Live;
  r.expectHeldRoot = GetU64(o, "heldRoot");
  r.exclusive = GetBool(o, "exclusive");
  return r;
}

// JS numbers hold 53 bits: a larger value (only hostile metadata has one) is refused, never rounded.
[[noreturn]] void BeyondSafe(const std::string& path, uint64_t block, const std::string& what) {
  SysError e{0, "", "metadata", path, what + " beyond 2^53"};
  e.block = int64_t(block);
  e.check = e.detail;
  throw e;
}
void CheckSafe(const std::string& path, uint64_t block, uint64_t v, const char* what) {
  if (v > kMaxSafe) BeyondSafe(path, block, what);
}

// Counts of data blocks also reach JS as bytes and sectors: those must stay within 2^53 as well.
void CheckSafeBytes(const std::string& path, uint64_t block, uint64_t blocks, uint32_t dataBlockSize, const char* what) {
  uint64_t perBlock = uint64_t(dataBlockSize) * 512;  // dataBlockSize >= 128: the superblock check
  if (blocks <= kMaxSafe / perBlock) return;
  BeyondSafe(path, block, std::string(what) + " in bytes");
}

void CheckReport(const std::string& path, const MetaReport& r) {
  for (const MetaSuperblock* s : {&r.live, &r.view}) {
    CheckSafe(path, s->location, s->transactionId, "transaction id");
    CheckSafe(path, s->location, s->dataSpace.nrBlocks, "data blocks");
    CheckSafe(path, s->location, s->dataSpace.nrAllocated, "allocated data blocks");
    CheckSafe(path, s->location, s->metadataSpace.nrBlocks, "metadata space map blocks");
    CheckSafe(path, s->location, s->metadataSpace.nrAllocated, "allocated metadata blocks");
    CheckSafe(path, s->location, s->metadataNrBlocks, "metadata blocks");
  }
  for (const ThinDeviceFacts& d : r.devices) {
    CheckSafe(path, r.view.detailsRoot, d.id, "thin id");
    uint64_t end = uint64_t(d.highest) + 1;  // unsigned: highest may be INT64_MAX (and is -1 for none)
    CheckSafe(path, r.view.mappingRoot, end, "highest mapped block");
    // A volume's usage gives the highest mapped sector; a diff gives ranges in sectors up to there.
    CheckSafeBytes(path, r.view.mappingRoot, end, r.view.dataBlockSize, "highest mapped block");
    CheckSafe(path, r.view.detailsRoot, d.mappedBlocks, "mapped blocks");
    CheckSafeBytes(path, r.view.detailsRoot, d.mappedBlocks, r.view.dataBlockSize, "mapped blocks");
    CheckSafeBytes(path, r.view.mappingRoot, d.mapped, r.view.dataBlockSize, "mappings");  // exclusive and shared are at most this
    CheckSafe(path, r.view.detailsRoot, d.transactionId, "device transaction id");
  }
}

Napi::Object SuperblockToJs(Napi::Env env, const MetaSuperblock& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("location", double(s.location));
  o.Set("version", s.version);
  o.Set("flags", s.flags);
  o.Set("time", s.time);
  o.Set("transactionId", double(s.transactionId));
  o.Set("heldRoot", double(s.heldRoot));
  o.Set("dataBlocks", double(s.dataSpace.nrBlocks));
  o.Set("dataBlocksUsed", double(s.dataSpace.nrAllocated));
  o.Set("metadataBlocks", double(s.metadataSpace.nrBlocks));
  o.Set("metadataBlocksUsed", double(s.metadataSpace.nrAllocated));
  o.Set("dataBlockSize", s.dataBlockSize);
  o.Set("formattedMetadataBlocks", double(s.metadataNrBlocks));
  o.Set("compatFlags", s.compatFlags);
  o.Set("compatRoFlags", s.compatRoFlags);
  return o;
}

// metadataRead(path, { held, heldRoot, exclusive }, usage) and metadataReadAsync(...).
struct MetadataReadOp {
  std::string path;
  MetaReadOptions options;
  bool usage;
  MetaReport report;
  explicit MetadataReadOp(const Napi::CallbackInfo& info)
      : path(ArgString(info, 0)), options(ReadOptions(info, 1)), usage(info[2].ToBoolean().Value()) {}
  void Execute() {
    report = ReadThinMetadata(path, options, usage);
    CheckReport(path, report);
  }
  Napi::Value Result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("live", SuperblockToJs(env, report.live));
    o.Set("view", SuperblockToJs(env, report.view));
    o.Set("deviceBlocks", double(report.deviceBlocks));
    // Columns, not an object per device: 10,000 devices cost a few typed arrays.
    size_t n = report.devices.size();
    Napi::Float64Array ids = Napi::Float64Array::New(env, n), mappedBlocks = Napi::Float64Array::New(env, n),
                       tids = Napi::Float64Array::New(env, n);
    Napi::Uint32Array created = Napi::Uint32Array::New(env, n), snapshotted = Napi::Uint32Array::New(env, n);
    for (size_t i = 0; i < n; i++) {
      const ThinDeviceFacts& d = report.devices[i];
      ids[i] = double(d.id);
      mappedBlocks[i] = double(d.mappedBlocks);
      tids[i] = double(d.transactionId);
      created[i] = d.creationTime;
      snapshotted[i] = d.snapshottedTime;
    }
    o.Set("ids", ids);
    o.Set("mappedBlocks", mappedBlocks);
    o.Set("transactionIds", tids);
    o.Set("creationTimes", created);
    o.Set("snapshottedTimes", snapshotted);
    if (usage) {
      Napi::Float64Array mapped = Napi::Float64Array::New(env, n), exclusive = Napi::Float64Array::New(env, n),
                         highest = Napi::Float64Array::New(env, n);
      for (size_t i = 0; i < n; i++) {
        mapped[i] = double(report.devices[i].mapped);
        exclusive[i] = double(report.devices[i].exclusive);
        highest[i] = double(report.devices[i].highest);
      }
      o.Set("mapped", mapped);
      o.Set("exclusive", exclusive);
      o.Set("highest", highest);
    }
    return o;
  }
};

// metadataDiff(path, options, a, b, from, maxRanges, maxMappings) and metadataDiffAsync(...):
// { ranges: Float64Array of (kind, begin, length) triples, done, next }.
struct MetadataDiffOp {
  std::string path;
  MetaReadOptions options;
  uint64_t a, b, from, maxRanges, maxMappings;
  DiffChunk chunk;
  explicit MetadataDiffOp(const Napi::CallbackInfo& info)
      : path(ArgString(info, 0)), options(ReadOptions(info, 1)) {
    Napi::Object args = ArgObject(info, 2);
    a = GetU64(args, "a");
    b = GetU64(args, "b");
    from = GetU64(args, "from");
    maxRanges = GetU64(args, "maxRanges", 4096);
    maxMappings = GetU64(args, "maxMappings", 1 << 20);
  }
  void Execute() {
    chunk = DiffThinDevices(path, options, a, b, from, size_t(maxRanges), maxMappings);
    // Ranges reach JS in data blocks and in sectors ((begin + length) * block size): both within 2^53.
    uint64_t maxBlocks = kMaxSafe / chunk.dataBlockSize;
    for (const DiffRange& r : chunk.ranges) {
      CheckSafe(path, 0, r.begin + r.length, "mapped virtual block");
      if (r.begin + r.length > maxBlocks) BeyondSafe(path, 0, "mapped virtual block in sectors");
    }
    CheckSafe(path, 0, chunk.next, "mapped virtual block");
  }
  Napi::Value Result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    Napi::Float64Array r = Napi::Float64Array::New(env, chunk.ranges.size() * 3);
    for (size_t i = 0; i < chunk.ranges.size(); i++) {
      r[3 * i] = double(chunk.ranges[i].kind);
      r[3 * i + 1] = double(chunk.ranges[i].begin);
      r[3 * i + 2] = double(chunk.ranges[i].length);
    }
    o.Set("ranges", r);
    o.Set("done", chunk.done);
    o.Set("next", double(chunk.next));
    o.Set("dataBlockSize", double(chunk.dataBlockSize));
    return o;
  }
};

// metadataClearNeedsCheck(path) and metadataClearNeedsCheckAsync(path): the full check, then needs_check
// cleared if it was set: { wasSet, live: superblock as checked, devices: number of thin devices }.
struct ClearNeedsCheckOp {
  std::string path;
  NeedsCheckRepair repair;
  explicit ClearNeedsCheckOp(const Napi::CallbackInfo& info) : path(ArgString(info, 0)) {}
  void Execute() {
    repair = ClearNeedsCheck(path);
    CheckReport(path, repair.report);
  }
  Napi::Value Result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("wasSet", repair.wasSet);
    o.Set("live", SuperblockToJs(env, repair.report.live));
    o.Set("devices", double(repair.report.devices.size()));
    return o;
  }
};

}  // namespace

void RegisterThinMetadata(Napi::Env env, Napi::Object exports) {
  ExportBoth<MetadataReadOp>(env, exports, "metadataRead");
  ExportBoth<MetadataDiffOp>(env, exports, "metadataDiff");
  ExportBoth<ClearNeedsCheckOp>(env, exports, "metadataClearNeedsCheck");
}
