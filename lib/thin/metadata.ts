// A thin pool's own on-disk metadata, read in-process (native/thin_metadata.cc): the superblock, the thin
// devices that really exist, per-device usage (mapped / exclusive / shared, as thin_ls counts them) and the
// virtual blocks whose mapping differs between two devices (as thin_delta reports them). ThinMetadata reads
// an offline metadata device or image; a ThinPool reads its live metadata through a metadata snapshot
// (metadata-snapshot.ts) with the same conversions.
import fs from 'node:fs';
import { native, RawDiffChunk, RawMetadataReport, RawMetadataView, RawSuperblock } from '../core/binding';
import { dmError } from '../core/errors';
import { Bytes, DataBlocks, MetadataBlocks, Sectors, dataBlocksToBytes, dataBlocksToSectors } from '../core/units';
import { Steps, call, runAsync, runSync } from '../core/steps';
import { checkInteger, checkOptions, checkPath, checkThinId, optBoolean } from '../core/validate';

/** The superblock facts and every thin device, as the metadata records them. */
export interface PoolMetadata {
  /** How it was read: through a metadata snapshot (a live pool), or block 0 (offline metadata, or a read-only pool). */
  view: 'snapshot' | 'superblock';
  /** Superblock format: 1 (kernels before 3.14) or 2. */
  version: number;
  /** The pool's transaction id. */
  transactionId: number;
  /** The pool's time: +1 at every snapshot; mappings and devices carry it. */
  time: number;
  /** The data block size, in sectors. */
  dataBlockSize: Sectors;
  /** Data blocks in the pool. */
  dataBlocks: DataBlocks;
  /** Data blocks mapped. */
  dataBlocksUsed: DataBlocks;
  /** Metadata blocks (4 KiB) on the metadata device. */
  metadataBlocks: MetadataBlocks;
  /** Metadata blocks in use. */
  metadataBlocksUsed: MetadataBlocks;
  /** A metadata operation failed and the pool wants thin_check before full use. */
  needsCheck: boolean;
  /** A metadata snapshot another tool holds (its block), or null. The library's own, used for this read, is not reported. */
  heldRoot: MetadataBlocks | null;
  /** Every thin device in the metadata, ascending id. */
  devices: ThinDeviceMetadata[];
}

/** A thin device as the pool's metadata records it. */
export interface ThinDeviceMetadata {
  /** Its thin id. */
  id: number;
  /** Data blocks it maps, as its device details count them. */
  mappedBlocks: DataBlocks;
  /** The same, in bytes. */
  mappedBytes: Bytes;
  /** The pool's transaction id when the device was created. */
  transactionId: number;
  /** The pool's time at creation, and at the device's latest snapshot. */
  creationTime: number;
  /** The pool's time at the device's latest snapshot. */
  snapshottedTime: number;
}

/** What thin_ls calls MAPPED, EXCLUSIVE and SHARED, and the highest mapped virtual block. */
export interface ThinDeviceUsage {
  /** The thin id. */
  id: number;
  /** The registry's name for the id (a pool's usage()); null for an id with no record, or offline. */
  name: string | null;
  /** Data blocks it maps. */
  mapped: DataBlocks;
  /** Mapped blocks that no other device in the pool maps: what deleting the device gives back. */
  exclusive: DataBlocks;
  /** Mapped blocks that other devices map too. */
  shared: DataBlocks;
  /** `mapped`, in bytes. */
  mappedBytes: Bytes;
  /** `exclusive`, in bytes. */
  exclusiveBytes: Bytes;
  /** `shared`, in bytes. */
  sharedBytes: Bytes;
  /** The highest mapped virtual block, or null when nothing is mapped. */
  highestMappedBlock: DataBlocks | null;
}

/** Per-device usage of a pool ({@link ThinPool.usage}), as of one transaction. */
export interface PoolUsage {
  /** The transaction id of the metadata read. */
  transactionId: number;
  /** The data block size, in sectors. */
  dataBlockSize: Sectors;
  /** Every thin device, ascending id. */
  devices: ThinDeviceUsage[];
}

/** Virtual blocks mapped only on the left, only on the right, or on both sides to different data blocks. */
export type DiffKind = 'leftOnly' | 'rightOnly' | 'different';
/** A run of virtual blocks whose mapping differs the same way between two thin devices. */
export interface DiffRange {
  /** How it differs. */
  kind: DiffKind;
  /** Its first virtual block. */
  begin: DataBlocks;
  /** Its length, in data blocks. */
  length: DataBlocks;
  /** The same range in sectors of the volumes. */
  startSector: Sectors;
  /** Its length, in sectors. */
  sectors: Sectors;
}

/** Options of {@link ThinMetadata.read}. */
export interface ReadMetadataOptions {
  /** Also walk every mapping tree: per-device usage (a full walk; the device list alone reads a few blocks). */
  usage?: boolean;
}
/** Options of {@link ThinPool.diff}. */
export interface DiffOptions {
  /** Ranges per chunk the iterator reads at a time (default 4096). */
  chunkRanges?: number;
}

const KINDS: DiffKind[] = ['leftOnly', 'rightOnly', 'different'];

/** Where to read: a metadata device or image, and through which superblock. */
export interface MetadataSource { path: string; view: RawMetadataView }

export function* readSteps(src: MetadataSource, usage: boolean): Steps<RawMetadataReport> {
  return yield* call(() => native.metadataRead(src.path, src.view, usage), () => native.metadataReadAsync(src.path, src.view, usage));
}

export function* diffChunkSteps(src: MetadataSource, a: number, b: number, from: number, maxRanges: number): Steps<RawDiffChunk> {
  const args = { a, b, from, maxRanges };
  return yield* call(() => native.metadataDiff(src.path, src.view, args), () => native.metadataDiffAsync(src.path, src.view, args));
}

const blocksOf = (n: number) => n as DataBlocks;

export function toMetadata(raw: RawMetadataReport, heldByOther: number | null): PoolMetadata {
  const live: RawSuperblock = raw.live, view = raw.view;
  const blockSize = view.dataBlockSize as Sectors;
  const devices: ThinDeviceMetadata[] = [];
  for (let i = 0; i < raw.ids.length; i++) {
    devices.push({
      id: raw.ids[i],
      mappedBlocks: blocksOf(raw.mappedBlocks[i]),
      mappedBytes: safeBytes(raw.mappedBlocks[i], blockSize),
      transactionId: raw.transactionIds[i],
      creationTime: raw.creationTimes[i],
      snapshottedTime: raw.snapshottedTimes[i],
    });
  }
  return {
    view: view.location === 0 ? 'superblock' : 'snapshot',
    version: view.version,
    transactionId: view.transactionId,
    time: view.time,
    dataBlockSize: blockSize,
    // The snapshot's copy has no space maps: they come from block 0.
    dataBlocks: blocksOf(live.dataBlocks),
    dataBlocksUsed: blocksOf(live.dataBlocksUsed),
    metadataBlocks: live.metadataBlocks as MetadataBlocks,
    metadataBlocksUsed: live.metadataBlocksUsed as MetadataBlocks,
    needsCheck: (live.flags & 1) !== 0,
    heldRoot: heldByOther === null ? null : heldByOther as MetadataBlocks,
    devices,
  };
}

export function toUsage(raw: RawMetadataReport, names?: Map<number, string>): PoolUsage {
  const blockSize = raw.view.dataBlockSize as Sectors;
  const devices: ThinDeviceUsage[] = [];
  for (let i = 0; i < raw.ids.length; i++) {
    const mapped = raw.mapped![i], exclusive = raw.exclusive![i], highest = raw.highest![i];
    devices.push({
      id: raw.ids[i],
      name: names?.get(raw.ids[i]) ?? null,
      mapped: blocksOf(mapped),
      exclusive: blocksOf(exclusive),
      shared: blocksOf(mapped - exclusive),
      mappedBytes: safeBytes(mapped, blockSize),
      exclusiveBytes: safeBytes(exclusive, blockSize),
      sharedBytes: safeBytes(mapped - exclusive, blockSize),
      highestMappedBlock: highest < 0 ? null : blocksOf(highest),
    });
  }
  return { transactionId: raw.view.transactionId, dataBlockSize: blockSize, devices };
}

// Sizes from metadata are checked: hostile metadata may name counts whose bytes pass 2^53.
function safeBytes(blocks: number, blockSize: Sectors): Bytes {
  const b = dataBlocksToBytes(blocksOf(blocks), blockSize);
  if (!Number.isSafeInteger(b)) throw dmError('ERR_DM_METADATA', `${blocks} data blocks of ${blockSize} sectors are beyond 2^53 bytes`);
  return b;
}

function safeSectors(blocks: number, blockSize: Sectors): Sectors {
  const s = dataBlocksToSectors(blocksOf(blocks), blockSize);
  if (!Number.isSafeInteger(s)) throw dmError('ERR_DM_METADATA', `${blocks} data blocks of ${blockSize} sectors are beyond 2^53 sectors`);
  return s;
}

/** Appends a chunk's ranges to `out`, joining a range that continues the last one (chunks may cut a range). */
export function appendRanges(out: DiffRange[], chunk: RawDiffChunk): void {
  const blockSize = chunk.dataBlockSize as Sectors;
  const r = chunk.ranges;
  for (let i = 0; i < r.length; i += 3) {
    const kind = KINDS[r[i]], begin = r[i + 1], length = r[i + 2];
    const last = out[out.length - 1];
    if (last && last.kind === kind && last.begin + last.length === begin) {
      last.length = blocksOf(last.length + length);
      last.sectors = safeSectors(last.length, blockSize);
      continue;
    }
    out.push({
      kind, begin: blocksOf(begin), length: blocksOf(length),
      startSector: safeSectors(begin, blockSize), sectors: safeSectors(length, blockSize),
    });
  }
}

export function checkDiffOptions(options: DiffOptions | undefined): Required<DiffOptions> {
  const o = checkOptions<DiffOptions>(options, ['chunkRanges'], 'diff options');
  return { chunkRanges: o.chunkRanges === undefined ? 4096 : checkInteger(o.chunkRanges, 'chunkRanges', 1, 1 << 20) };
}

/**
 * Every differing range from a sequence of chunk reads, in the form that runs them: `read(from)` reads one
 * chunk. The sync twin collects them all.
 */
export function* allRangesSteps(read: (from: number) => Steps<RawDiffChunk>): Steps<DiffRange[]> {
  const out: DiffRange[] = [];
  for (let from = 0; ;) {
    const chunk = yield* read(from);
    appendRanges(out, chunk);
    if (chunk.done) return out;
    from = chunk.next;
  }
}

/**
 * The ranges as an async iterator: chunk by chunk, each range yielded once it can no longer grow. `open`
 * runs before the first chunk and `close` after the last, or when the consumer stops early (break, throw).
 */
export async function* streamRanges(read: (from: number) => Promise<RawDiffChunk>,
  open?: () => Promise<void>, close?: () => Promise<void>): AsyncGenerator<DiffRange, void, undefined> {
  if (open) await open();
  try {
    const pending: DiffRange[] = [];
    for (let from = 0; ;) {
      const chunk = await read(from);
      appendRanges(pending, chunk);
      // The last range may continue in the next chunk: hold it back until then.
      const ready = chunk.done ? pending.length : pending.length - 1;
      for (const r of pending.splice(0, Math.max(0, ready))) yield r;
      if (chunk.done) return;
      from = chunk.next;
    }
  } finally {
    if (close) await close();
  }
}

function offline(path: unknown): MetadataSource {
  const p = checkPath(path, 'metadata path');
  // O_EXCL refuses a device an active pool holds (EBUSY), as thin-provisioning-tools refuse live metadata. A
  // file has no such guard: one that a loop device serves to a device (a live pool's) is refused here.
  const loop = loopServingFile(p);
  if (loop) throw dmError('ERR_DM_BUSY', `${p} is live metadata: ${loop} serves it to a device; read the pool with metadata(), usage() and diff()`, p);
  return { path: p, view: { exclusive: true } };
}

// The loop device whose backing file is `file` and that a device holds open (a table uses it), if any.
function loopServingFile(file: string): string | undefined {
  let real: string;
  try { real = fs.realpathSync(file); } catch { return undefined; }
  let entries: string[] = [];
  try { entries = fs.readdirSync('/sys/block').filter((e) => /^loop\d+$/.test(e)); } catch { return undefined; }
  for (const e of entries) {
    try {
      if (fs.readFileSync(`/sys/block/${e}/loop/backing_file`, 'utf8').trimEnd() !== real) continue;
      if (fs.readdirSync(`/sys/block/${e}/holders`).length > 0) return `/dev/${e}`;
    } catch { /* not bound, or gone */ }
  }
  return undefined;
}

function* offlineReadSteps(path: unknown, options: ReadMetadataOptions | undefined): Steps<PoolMetadata & { usage?: PoolUsage }> {
  const src = offline(path);
  const o = checkOptions<ReadMetadataOptions>(options, ['usage'], 'metadata options');
  const usage = optBoolean(o.usage, 'usage') ?? false;
  const raw = yield* readSteps(src, usage);
  const m: PoolMetadata & { usage?: PoolUsage } = toMetadata(raw, raw.live.heldRoot || null);
  if (usage) m.usage = toUsage(raw);
  return m;
}

function* offlineDiffSteps(path: unknown, a: unknown, b: unknown): Steps<DiffRange[]> {
  const src = offline(path);
  const left = checkThinId(a, 'left thin id'), right = checkThinId(b, 'right thin id');
  return yield* allRangesSteps((from) => diffChunkSteps(src, left, right, from, 4096));
}

/**
 * The metadata of a pool that is not active: its metadata device, or an image or backup copy of it. A device
 * an active pool uses is refused (EBUSY); read a live pool through ThinPool's metadata(), usage() and diff().
 */
export const ThinMetadata = {
  /** The superblock and every thin device; with `{ usage: true }` also each device's usage. */
  read(path: string, o?: ReadMetadataOptions): Promise<PoolMetadata & {
    /** Each device's usage, with `{ usage: true }`. */
    usage?: PoolUsage;
  }> { return runAsync(offlineReadSteps(path, o)); },
  /** The sync twin of read(). */
  readSync(path: string, o?: ReadMetadataOptions): PoolMetadata & {
    /** Each device's usage, with `{ usage: true }`. */
    usage?: PoolUsage;
  } { return runSync(offlineReadSteps(path, o)); },
  /** The ranges whose mapping differs between thin ids `a` and `b`. */
  diff(path: string, a: number, b: number): Promise<DiffRange[]> { return runAsync(offlineDiffSteps(path, a, b)); },
  /** The sync twin of diff(). */
  diffSync(path: string, a: number, b: number): DiffRange[] { return runSync(offlineDiffSteps(path, a, b)); },
};
