// A reader of dm-thin-pool's on-disk metadata (the format: ../shared/reference/thin-metadata.md; the kernel's
// drivers/md/dm-thin-metadata.c and persistent-data/). Read-only, plain pread: no JS here. Every block it uses
// is verified (checksum with its salt, self block number, node bounds, key order, depth, no block twice in one
// tree); corrupt or hostile metadata throws a SysError with command "metadata", the block and the check.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

struct MetaSpaceMap {
  uint64_t nrBlocks = 0;
  uint64_t nrAllocated = 0;
  uint64_t bitmapRoot = 0;    // data sm: root of the index btree; metadata sm: the index block
  uint64_t refCountRoot = 0;  // btree of counts of 3 and more
};

struct MetaSuperblock {
  uint64_t location = 0;
  uint32_t flags = 0;  // bit 0: needs_check
  uint32_t version = 0;
  uint32_t time = 0;
  uint64_t transactionId = 0;
  uint64_t heldRoot = 0;
  MetaSpaceMap dataSpace;      // zero in a metadata snapshot's copy
  MetaSpaceMap metadataSpace;  // zero in a metadata snapshot's copy
  uint64_t mappingRoot = 0;
  uint64_t detailsRoot = 0;
  uint32_t dataBlockSize = 0;  // sectors
  uint64_t metadataNrBlocks = 0;
  uint32_t compatFlags = 0, compatRoFlags = 0, incompatFlags = 0;
};

struct ThinDeviceFacts {
  uint64_t id = 0;
  uint64_t mappedBlocks = 0;  // as the device details record it
  uint64_t transactionId = 0;
  uint32_t creationTime = 0;
  uint32_t snapshottedTime = 0;
  // Filled by a usage walk: mappings found, those whose data block no other mapping in the view uses, and
  // the highest mapped virtual block (-1: none).
  uint64_t mapped = 0;
  uint64_t exclusive = 0;
  int64_t highest = -1;
};

enum class MetaView { Live, Held };

struct MetaReadOptions {
  MetaView view = MetaView::Live;
  // With view Held: the held root the caller reserved (0: whatever block 0 names).
  uint64_t expectHeldRoot = 0;
  // Open with O_EXCL (offline metadata: fails with EBUSY while a pool uses the device).
  bool exclusive = false;
  // Open read-write (only the superblock writer does, and always with exclusive).
  bool writable = false;
};

struct MetaReport {
  MetaSuperblock live;  // block 0
  MetaSuperblock view;  // the superblock read through: block 0, or the metadata snapshot's copy
  uint64_t deviceBlocks = 0;  // metadata blocks the device or file holds
  std::vector<ThinDeviceFacts> devices;  // ascending id
};

// The superblocks and every thin device's details; with usage, also walks every mapping tree.
MetaReport ReadThinMetadata(const std::string& path, const MetaReadOptions& o, bool usage);

enum class DiffKind : uint8_t { LeftOnly = 0, RightOnly = 1, Different = 2 };
struct DiffRange {
  DiffKind kind;
  uint64_t begin;
  uint64_t length;
};
struct DiffChunk {
  std::vector<DiffRange> ranges;
  bool done = false;
  uint64_t next = 0;  // when not done: the virtual block the next chunk starts at
  uint32_t dataBlockSize = 0;  // the view's, in sectors
};

// The virtual blocks from `from` whose mapping differs between thin ids a and b, as ranges, ascending; stops
// after about maxRanges ranges or maxMappings mappings read (a range may then continue in the next chunk).
DiffChunk DiffThinDevices(const std::string& path, const MetaReadOptions& o, uint64_t a, uint64_t b, uint64_t from,
                          size_t maxRanges, uint64_t maxMappings);

struct NeedsCheckRepair {
  MetaReport report;      // what the full check read (before the flag was cleared)
  bool wasSet = false;    // needs_check was set, and is now cleared
};

// Verifies all of the metadata on `path`, which no pool may hold (opened with O_EXCL): the superblock (and a
// held snapshot's copy), the device details, every mapping tree, and both space maps (every index and bitmap
// block, the reference-count trees, the allocated counts against the bitmaps). Only if all of it passes, and
// block 0 reads back as checked, clears the superblock's needs_check flag with a new checksum, written with
// O_DIRECT and fsync'ed. Corrupt metadata throws as the reader does, and nothing is written.
NeedsCheckRepair ClearNeedsCheck(const std::string& path);
