// Seeded fuzzing of the metadata reader (native/thin_metadata.cc) on the kernel-made fixtures
// (test/fixtures/metadata): thousands of mutated images per fixture, each changed in the blocks the reader reads
// (bit flips with and without a fixed checksum, cut files, child pointers sent to an ancestor, to the node
// itself, to the superblock or past the end, counts, keys, value sizes, flags and superblock fields out of
// range, a node placed twice in one tree, chains of nodes deeper than the kernel allows, cycles). Every case
// reads with usage and diffs two pairs of ids, promise form first (a hang would fail the case instead of the
// process), then the sync twin, and asserts: each call gives a normal result or a DevmapperError that is
// ERR_DM_METADATA (with a numeric block and a check) or ENODATA / EIO; the two forms agree; a normal result is
// self-consistent; a read that succeeds vouches for the diffs of its ids.
//
// The seed is fixed; DEVMAPPER_FUZZ_SEED changes it, DEVMAPPER_FUZZ_CASES sets the cases per fixture, and
// DEVMAPPER_FUZZ_CASE=<fixture>:<index> replays one case (each failure prints its seed, fixture, index and
// mutation). The built cases at the end are single mutations whose answer is known.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import zlib from 'node:zlib';
import { DevmapperError, DiffRange, ThinMetadata } from '../../lib';
import { runAsync, runSync } from '../../lib/core/steps';
import { readSteps } from '../../lib/thin/metadata';
import {
  BLOCK, INTERNAL, ImageFile, ImageMap, LEAF, Pointer, SALT, SB, blockOf, crc32c, fixChecksum, keyOffset, makeNode, mapImage, valueOffset,
} from './metadata-image';
import { bound, fuzzRuns } from './emulation';

const SEED = Number(process.env.DEVMAPPER_FUZZ_SEED ?? 0x6d657461) >>> 0;
const CASES = Number(process.env.DEVMAPPER_FUZZ_CASES ?? fuzzRuns(3000));
const ONLY = process.env.DEVMAPPER_FUZZ_CASE;
// A file that names the case under way: a sanitizer report ends the process before any failure is printed
// (test/sanitize.sh shows it then).
const TRACE = process.env.DEVMAPPER_FUZZ_TRACE;
const HANG_MS = 10_000;  // a generous bound for one call on a few MiB, not a speed claim
jest.setTimeout(bound(300_000));

const FIXTURES = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'metadata');
// tmpfs where there is one: the reader's O_DIRECT open falls back to buffered reads there, which keeps
// thousands of cases fast (the fixture test reads through O_DIRECT).
const tmp = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'metadata-fuzz-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// ---- a seeded PRNG (mulberry32), one stream per case ---------------------------------------------------

class Rand {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0; }
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number { return Math.floor(this.next() * n); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
  u64(): bigint { return (BigInt(this.int(2 ** 32)) << 32n) | BigInt(this.int(2 ** 32)); }
}
const caseSeed = (fixture: number, index: number) => (Math.imul(SEED ^ 0x9e3779b9, 31) + Math.imul(fixture + 1, 0x85ebca6b) + Math.imul(index, 0xc2b2ae35)) >>> 0;

// ---- mutations ------------------------------------------------------------------------------------------

/** A case's changes: blocks copied on first write, and an optional cut of the file. */
class Mutation {
  readonly blocks = new Map<number, Buffer>();
  truncate?: number;
  constructor(readonly image: Buffer, readonly map: ImageMap) {}
  block(b: number): Buffer {
    let data = this.blocks.get(b);
    if (!data) {
      data = Buffer.from(b * BLOCK < this.image.length ? blockOf(this.image, b) : Buffer.alloc(BLOCK));
      this.blocks.set(b, data);
    }
    return data;
  }
  fix(b: number, salt: number): void { fixChecksum(this.block(b), salt); }
  saltOf(b: number): number { return this.map.superblocks.includes(b) ? SALT.superblock : SALT.node; }
}

type Mutator = (r: Rand, m: Mutation) => string;
const U64_EDGES = [0n, 1n, 2n ** 24n - 1n, 2n ** 24n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 40n, 2n ** 47n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n,
  2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 2n, 2n ** 64n - 1n];
const U32_EDGES = [0, 1, 2, 3, 4, 7, 8, 9, 16, 24, 126, 127, 128, 168, 252, 253, 336, 337, 511, 2 ** 31, 2 ** 32 - 1];

const readable = (m: Mutation) => [...m.map.superblocks, ...m.map.nodes.keys()];
const nodeBlocks = (m: Mutation) => [...m.map.nodes.keys()];
const lastBlock = (m: Mutation) => Math.max(...readable(m));

const flipBits: Mutator = (r, m) => {
  const b = r.pick(readable(m));
  const isSb = m.map.superblocks.includes(b);
  const data = m.block(b);
  const at: number[] = [];
  const flips = 1 + r.int(4);
  for (let i = 0; i < flips; i++) {
    let off: number;
    if (isSb) off = r.chance(0.9) ? r.int(364) : r.int(BLOCK);
    else {
      const n = m.map.nodes.get(b)!.facts;
      const entry = r.int(Math.max(1, n.nr));
      const where = r.next();
      off = where < 0.25 ? r.int(32) : where < 0.6 ? keyOffset(entry) + r.int(8) : where < 0.95 ? valueOffset(n, entry) + r.int(n.valueSize) : r.int(BLOCK);
      off = Math.min(off, BLOCK - 1);
    }
    data[off] ^= 1 << r.int(8);
    at.push(off);
  }
  const fixed = r.chance(0.7);
  if (fixed) m.fix(b, m.saltOf(b));
  return `bit flips in block ${b} at bytes ${at.join(',')}, checksum ${fixed ? 'fixed' : 'left stale'}`;
};

const truncate: Mutator = (r, m) => {
  const k = r.int(lastBlock(m) + 2);
  m.truncate = r.chance(0.5) ? k * BLOCK : k * BLOCK + 1 + r.int(BLOCK - 1);
  return `file cut at byte ${m.truncate}`;
};

function pointTo(m: Mutation, p: Pointer, target: bigint): void {
  m.block(p.holder).writeBigUInt64LE(target, p.offset);
  m.fix(p.holder, p.salt);
}

const redirect: Mutator = (r, m) => {
  const p = r.pick(m.map.pointers);
  const choices: [string, () => bigint][] = [
    ['itself', () => BigInt(p.holder)],
    ['the superblock', () => 0n],
    ['the last block', () => BigInt(m.map.blocks - 1)],
    ['just past the end', () => BigInt(m.map.blocks)],
    ['far past the end', () => BigInt(m.map.blocks + 1 + r.int(1 << 20))],
    ['an edge value', () => r.pick(U64_EDGES)],
    ['another node', () => BigInt(r.pick(nodeBlocks(m)))],
    ['a block the reader does not read', () => BigInt(r.pick(m.map.free))],
  ];
  if (p.from.path.length) choices.push(['an ancestor', () => BigInt(r.pick(p.from.path))], ['an ancestor', () => BigInt(p.from.path[0])]);
  if (m.map.heldRoot) choices.push(['the held superblock', () => BigInt(m.map.heldRoot)]);
  const [what, value] = r.pick(choices);
  const target = value();
  pointTo(m, p, target);
  return `${p.kind} pointer in block ${p.holder} @${p.offset} (${p.from.tree}, depth ${p.from.depth}) to ${what}: ${target}`;
};

const counts: Mutator = (r, m) => {
  const b = r.pick(nodeBlocks(m));
  const n = m.map.nodes.get(b)!.facts;
  const field = r.chance(0.5) ? 16 : 20;
  const value = r.pick([...U32_EDGES, n.nr - 1, n.nr + 1, n.max, n.max + 1, n.nr, r.int(2 ** 32)].filter((v) => v >= 0 && v < 2 ** 32));
  m.block(b).writeUInt32LE(value, field);
  m.fix(b, SALT.node);
  return `${field === 16 ? 'nr_entries' : 'max_entries'} of block ${b} (nr ${n.nr}, max ${n.max}) set to ${value}`;
};

const keys: Mutator = (r, m) => {
  const b = r.pick(nodeBlocks(m).filter((x) => m.map.nodes.get(x)!.facts.nr > 0));
  const n = m.map.nodes.get(b)!.facts;
  const data = m.block(b);
  const i = r.int(n.nr);
  let what: string;
  const op = r.int(4);
  if (op === 0 && n.nr >= 2) {
    const j = i === 0 ? 1 : i - 1;
    data.writeBigUInt64LE(n.keys[j], keyOffset(i));
    data.writeBigUInt64LE(n.keys[i], keyOffset(j));
    what = `keys ${j} and ${i} swapped`;
  } else if (op === 1 && i > 0) {
    data.writeBigUInt64LE(n.keys[i - 1], keyOffset(i));
    what = `key ${i} set to key ${i - 1}`;
  } else if (op === 2) {
    const k = n.keys[i] + (r.chance(0.5) ? 1n : -1n);
    data.writeBigUInt64LE(BigInt.asUintN(64, k), keyOffset(i));
    what = `key ${i} moved by one`;
  } else {
    const k = r.pick(U64_EDGES);
    data.writeBigUInt64LE(k, keyOffset(i));
    what = `key ${i} set to ${k}`;
  }
  m.fix(b, SALT.node);
  return `${what} in block ${b} (${m.map.nodes.get(b)!.places[0].tree})`;
};

const valueSize: Mutator = (r, m) => {
  const b = r.pick(nodeBlocks(m));
  const v = r.pick([0, 4, 8, 16, 24, 32, 4064, 2 ** 32 - 1, r.int(2 ** 32)]);
  m.block(b).writeUInt32LE(v, 24);
  m.fix(b, SALT.node);
  return `value_size of block ${b} set to ${v}`;
};

const flags: Mutator = (r, m) => {
  const b = r.pick(nodeBlocks(m));
  const n = m.map.nodes.get(b)!.facts;
  const v = r.pick([0, INTERNAL, LEAF, 3, 4, n.flags === LEAF ? INTERNAL : LEAF, 2 ** 31, r.int(2 ** 32)]);
  m.block(b).writeUInt32LE(v, 4);
  m.fix(b, SALT.node);
  return `flags of block ${b} (${n.flags}) set to ${v}`;
};

const SB_FIELDS: [keyof typeof SB, 4 | 8, (r: Rand, m: Mutation) => bigint][] = [
  ['version', 4, (r) => BigInt(r.pick([0, 1, 2, 3, 2 ** 32 - 1]))],
  ['flags', 4, (r) => BigInt(r.pick([0, 1, 2, 3, 2 ** 31]))],
  ['incompatFlags', 4, (r) => BigInt(r.pick([0, 1, 2 ** 31, r.int(2 ** 32)]))],
  ['compatFlags', 4, (r) => BigInt(r.pick([1, r.int(2 ** 32)]))],
  ['compatRoFlags', 4, (r) => BigInt(r.pick([1, r.int(2 ** 32)]))],
  ['dataBlockSize', 4, (r) => BigInt(r.pick([0, 64, 127, 128, 129, 256, 2097152, 2097280, 2 ** 32 - 1]))],
  ['metadataBlockSize', 4, (r) => BigInt(r.pick([0, 7, 8, 9, 16]))],
  ['heldRoot', 8, (r, m) => r.pick([0n, 1n, BigInt(m.map.blocks), 2n ** 64n - 1n, BigInt(r.pick(nodeBlocks(m))), BigInt(r.pick(m.map.superblocks))])],
  ['mappingRoot', 8, (r, m) => r.pick([0n, BigInt(m.map.blocks), 2n ** 63n, BigInt(r.pick(nodeBlocks(m)))])],
  ['detailsRoot', 8, (r, m) => r.pick([0n, BigInt(m.map.blocks), 2n ** 63n, BigInt(r.pick(nodeBlocks(m)))])],
  ['dataSmNrBlocks', 8, (r) => r.pick([0n, 1n, 10n, 100n, 2n ** 32n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 64n - 1n])],
  ['dataSmNrAllocated', 8, (r) => r.pick([2n ** 53n, 2n ** 64n - 1n])],
  ['metaSmNrBlocks', 8, (r, m) => r.pick([0n, 1n, 2n, 10n, 100n, BigInt(m.map.blocks - 1), 2n ** 64n - 1n])],
  ['metaSmNrAllocated', 8, (r) => r.pick([2n ** 53n, 2n ** 64n - 1n])],
  ['metadataNrBlocks', 8, (r) => r.pick([0n, 2n ** 53n + 1n, 2n ** 64n - 1n])],
  ['transactionId', 8, (r) => r.pick([2n ** 53n - 1n, 2n ** 53n, 2n ** 64n - 1n])],
  ['time', 4, (r) => BigInt(r.pick([0, 2 ** 24, 2 ** 32 - 1]))],
  ['magic', 8, (r) => r.pick([0n, 27022011n, r.u64()])],
  ['blocknr', 8, (r) => r.pick([0n, 1n, 2n ** 64n - 1n])],
];

const superblockField: Mutator = (r, m) => {
  const at = r.pick(m.map.superblocks);
  const [name, size, value] = r.pick(SB_FIELDS);
  const v = value(r, m);
  const data = m.block(at);
  if (size === 4) data.writeUInt32LE(Number(v), SB[name]);
  else data.writeBigUInt64LE(v, SB[name]);
  const fixed = r.chance(0.9);
  if (fixed) m.fix(at, SALT.superblock);
  return `superblock ${at}: ${name} set to ${v}, checksum ${fixed ? 'fixed' : 'left stale'}`;
};

/** One tree holds a node twice: a child slot takes the target of another slot of the same tree and depth. */
const dag: Mutator = (r, m) => {
  const slots = m.map.pointers.filter((p) => p.kind === 'child' || p.kind === 'device root');
  const p = r.pick(slots);
  const same = slots.filter((q) => q.from.tree === p.from.tree && q.from.depth === p.from.depth && q.target !== p.target && q.kind === p.kind);
  if (!same.length) return redirect(r, m);
  const q = r.pick(same);
  pointTo(m, p, BigInt(q.target));
  return `${p.kind} slot in block ${p.holder} @${p.offset} (${p.from.tree}) given the target of block ${q.holder} @${q.offset}: ${q.target}`;
};

/** A chain of one-entry internal nodes built in zero blocks, put in front of a root; it may end in a cycle. */
const chain: Mutator = (r, m) => {
  const p = r.pick(m.map.pointers.filter((x) => x.kind !== 'child' && x.offset !== SB.heldRoot));
  const length = Math.min(m.map.free.length, r.pick([1, 2, 5, 13, 14, 15, 16, 17, 30, 100, 400]));
  if (length === 0) return redirect(r, m);
  const at = m.map.free.slice(-length);
  const cycle = r.chance(0.3);
  const end = cycle ? BigInt(r.pick(at)) : BigInt(p.target);
  at.forEach((b, i) => m.blocks.set(b, makeNode(b, false, [0n], [i + 1 < length ? BigInt(at[i + 1]) : end])));
  pointTo(m, p, BigInt(at[0]));
  return `a chain of ${length} internal nodes (blocks ${at[0]}..) before the ${p.kind} in block ${p.holder} @${p.offset} (${p.from.tree}), ending ${cycle ? `in a cycle to ${end}` : 'at the old root'}`;
};

/** Levels of nodes each pointing at every node of the next level: exponentially many paths to the old root. */
const lattice: Mutator = (r, m) => {
  const p = r.pick(m.map.pointers.filter((x) => x.kind !== 'child' && x.offset !== SB.heldRoot));
  const width = 2 + r.int(3), levels = Math.min(Math.floor(m.map.free.length / width), 4 + r.int(14));
  if (levels < 1) return redirect(r, m);
  const at = m.map.free.slice(-(width * levels));
  for (let l = 0; l < levels; l++) {
    const next = l + 1 < levels ? at.slice((l + 1) * width, (l + 2) * width).map(BigInt) : Array(width).fill(BigInt(p.target));
    for (let w = 0; w < width; w++) {
      const b = at[l * width + w];
      m.blocks.set(b, makeNode(b, false, next.map((_, i) => BigInt(i)), next));
    }
  }
  pointTo(m, p, BigInt(at[0]));
  return `a lattice ${width} wide and ${levels} deep (blocks ${at[0]}..) before the ${p.kind} in block ${p.holder} @${p.offset} (${p.from.tree})`;
};

/** The highest thin id changed in both the details and the top-level tree, so the two still agree. */
const highestId: Mutator = (r, m) => {
  const id = BigInt(m.map.ids[m.map.ids.length - 1]);
  const to = r.pick(U64_EDGES.filter((k) => k > id));
  for (const [b, { facts, places }] of m.map.nodes) {
    if (!places.some((pl) => pl.tree === 'details' || pl.tree === 'top')) continue;
    const i = facts.keys.indexOf(id);
    if (i < 0 || i !== facts.nr - 1 || facts.flags !== LEAF) continue;
    m.block(b).writeBigUInt64LE(to, keyOffset(i));
    m.fix(b, SALT.node);
  }
  return `thin id ${id} renamed ${to} in both trees`;
};

/** A leaf's last key raised to an edge value: keys stay ascending, so the walks get past the key checks. */
const lastKey: Mutator = (r, m) => {
  const leaves = nodeBlocks(m).filter((b) => { const f = m.map.nodes.get(b)!.facts; return f.flags === LEAF && f.nr > 0; });
  const b = r.pick(leaves);
  const n = m.map.nodes.get(b)!.facts;
  const to = r.pick(U64_EDGES.filter((k) => k > n.keys[n.nr - 1]));
  m.block(b).writeBigUInt64LE(to, keyOffset(n.nr - 1));
  m.fix(b, SALT.node);
  return `last key of leaf ${b} (${m.map.nodes.get(b)!.places[0].tree}) raised to ${to}`;
};

const MUTATORS: [Mutator, number][] = [
  [flipBits, 24], [truncate, 5], [redirect, 14], [counts, 8], [keys, 10], [valueSize, 4], [flags, 4],
  [superblockField, 14], [dag, 5], [chain, 5], [lattice, 2], [highestId, 3], [lastKey, 4],
];
const TOTAL = MUTATORS.reduce((s, [, w]) => s + w, 0);
function pickMutator(r: Rand): Mutator {
  let x = r.int(TOTAL);
  for (const [m, w] of MUTATORS) { if (x < w) return m; x -= w; }
  return flipBits;
}

function mutate(r: Rand, m: Mutation): string {
  const n = r.chance(0.1) ? 2 + r.int(2) : 1;  // sometimes several at once
  const notes: string[] = [];
  for (let i = 0; i < n; i++) notes.push(pickMutator(r)(r, m));
  return notes.join('; ');
}

// ---- the checks -----------------------------------------------------------------------------------------

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Why an error is not one the reader may give, or null. */
function badError(e: unknown): string | null {
  if (!(e instanceof DevmapperError)) return `not a DevmapperError: ${String(e)}`;
  if (e.code === 'ERR_DM_METADATA') {
    if (typeof e.block !== 'number' || !Number.isSafeInteger(e.block) || e.block < 0) return `ERR_DM_METADATA without a block: ${e.message}`;
    if (typeof e.check !== 'string' || e.check === '') return `ERR_DM_METADATA without a check: ${e.message}`;
    return null;
  }
  if (e.code === 'ENODATA' || e.code === 'EIO') return null;
  return `unexpected code ${e.code}: ${e.message}`;
}

const errKey = (e: unknown) => e instanceof DevmapperError ? `${e.code} ${e.check ?? ''}` : String(e);

function sameOutcome(a: Outcome, b: Outcome): boolean {
  if (a.ok !== b.ok) return false;
  if (a.ok && b.ok) return isDeepStrictEqual(a.value, b.value);
  return errKey((a as { error: unknown }).error) === errKey((b as { error: unknown }).error);
}

const safe = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

type Read = ReturnType<typeof ThinMetadata.readSync>;

/** Why a read's result contradicts itself, or null. */
function badRead(md: Read): string | null {
  const ids = md.devices.map((d) => d.id);
  for (let i = 0; i < ids.length; i++) {
    if (!safe(ids[i])) return `thin id ${ids[i]} is not a safe integer`;
    if (i > 0 && ids[i] <= ids[i - 1]) return `thin ids not ascending: ${ids[i - 1]}, ${ids[i]}`;
  }
  for (const k of ['transactionId', 'time', 'dataBlockSize', 'dataBlocks', 'dataBlocksUsed', 'metadataBlocks', 'metadataBlocksUsed'] as const)
    if (!safe(md[k])) return `${k} ${md[k]} is not a safe integer`;
  const u = md.usage!;
  if (!isDeepStrictEqual(u.devices.map((d) => d.id), ids)) return 'usage ids differ from the device ids';
  for (const d of u.devices) {
    for (const k of ['mapped', 'exclusive', 'shared', 'mappedBytes', 'exclusiveBytes', 'sharedBytes'] as const)
      if (!safe(d[k])) return `device ${d.id}: ${k} ${d[k]} is not a safe integer`;
    if (d.exclusive > d.mapped) return `device ${d.id}: exclusive ${d.exclusive} above mapped ${d.mapped}`;
    // Keys are unique and ascending in a device's tree: it maps at most highest + 1 blocks.
    const room = d.highestMappedBlock === null ? 0 : d.highestMappedBlock + 1;
    if (d.mapped > room) return `device ${d.id}: ${d.mapped} mappings at or below block ${d.highestMappedBlock}`;
    if ((d.highestMappedBlock === null) !== (d.mapped === 0)) return `device ${d.id}: highest ${d.highestMappedBlock} with ${d.mapped} mapped`;
  }
  return null;
}

function badDiff(ranges: DiffRange[], blockSize: number): string | null {
  let end = -1, lastKind = '';
  for (const r of ranges) {
    if (!['leftOnly', 'rightOnly', 'different'].includes(r.kind)) return `range kind ${r.kind}`;
    if (!safe(r.begin) || !safe(r.length) || r.length < 1) return `range ${r.begin}+${r.length}`;
    if (r.begin < end || (r.begin === end && r.kind === lastKind)) return `ranges overlap or are not joined at ${r.begin}`;
    if (r.sectors !== r.length * blockSize || r.startSector !== r.begin * blockSize) return `range ${r.begin} in sectors`;
    end = r.begin + r.length;
    lastKind = r.kind;
  }
  return null;
}

async function settle<T>(p: () => Promise<T>): Promise<Outcome> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`HANG: no answer in ${HANG_MS} ms`)), HANG_MS); });
  try {
    return { ok: true, value: await Promise.race([p(), hang]) };
  } catch (error) {
    return { ok: false, error };
  } finally {
    clearTimeout(timer);
  }
}
function settleSync<T>(f: () => T): Outcome {
  try { return { ok: true, value: f() }; } catch (error) { return { ok: false, error }; }
}

/** Every call on the mutated file, and what is wrong with the answers (empty: nothing). */
async function check(file: string, pairs: [number, number][], stats: Map<string, number>): Promise<string[]> {
  const problems: string[] = [];
  const calls: [string, () => Promise<unknown>, () => unknown][] = [
    ['read', () => ThinMetadata.read(file, { usage: true }), () => ThinMetadata.readSync(file, { usage: true })],
    ...pairs.map(([a, b]): [string, () => Promise<unknown>, () => unknown] =>
      [`diff ${a} ${b}`, () => ThinMetadata.diff(file, a, b), () => ThinMetadata.diffSync(file, a, b)]),
    ['held read', () => runAsync(readSteps({ path: file, view: { held: true } }, true)), () => runSync(readSteps({ path: file, view: { held: true } }, true))],
  ];
  const outcomes = new Map<string, Outcome>();
  for (const [name, promised, sync] of calls) {
    const p = await settle(promised);
    if (!p.ok && p.error instanceof Error && p.error.message.startsWith('HANG')) { problems.push(`${name}: ${p.error.message}`); return problems; }
    const s = settleSync(sync);
    for (const [form, o] of [['promise', p], ['sync', s]] as const) {
      if (!o.ok) {
        const bad = badError(o.error);
        if (bad) problems.push(`${name} (${form}): ${bad}`);
      }
    }
    if (!sameOutcome(p, s)) problems.push(`${name}: the promise and sync forms differ: ${p.ok ? 'ok' : errKey(p.error)} / ${s.ok ? 'ok' : errKey(s.error)}`);
    const key = s.ok ? `${name.split(' ')[0]}: ok` : `${name.split(' ')[0]}: ${errKey(s.error).replace(/\d+/g, 'N')}`;
    stats.set(key, (stats.get(key) ?? 0) + 1);
    outcomes.set(name, s);
  }
  const read = outcomes.get('read')!;
  if (read.ok) {
    const md = read.value as Read;
    const bad = badRead(md);
    if (bad) problems.push(`read: ${bad}`);
    const ids = new Set(md.devices.map((d) => d.id));
    for (const [a, b] of pairs) {
      const d = outcomes.get(`diff ${a} ${b}`)!;
      if (d.ok) {
        const bad = badDiff(d.value as DiffRange[], md.dataBlockSize);
        if (bad) problems.push(`diff ${a} ${b}: ${bad}`);
      }
      // What the read verified, the diff reads again: it may not fail where the read did not.
      const want = ids.has(a) && ids.has(b) ? 'ok' : 'ENODATA';
      const got = d.ok ? 'ok' : errKey(d.error);
      if (got.trim() !== want) problems.push(`diff ${a} ${b}: ${got} after a read that succeeded (expected ${want})`);
    }
  }
  return problems;
}

// ---- the fixtures ---------------------------------------------------------------------------------------

const FIXTURE_PAIRS: Record<string, [number, number][]> = {
  chain: [[0, 1], [3, 4]],
  many: [[0, 5], [16777215, 500]],
  held: [[0, 1], [0, 3]],
};

describe.each(Object.keys(FIXTURE_PAIRS).map((name, index) => [name, index] as const))('fixture %s', (name, index) => {
  const image = zlib.gunzipSync(fs.readFileSync(path.join(FIXTURES, `${name}.img.gz`)));
  const map = mapImage(image);
  const pairs = FIXTURE_PAIRS[name];

  test(`${ONLY ? 'one' : CASES} mutated image${ONLY ? '' : 's'}: normal results or the reader's own errors, never anything else`, async () => {
    const file = new ImageFile(path.join(tmp, `${name}.img`), image);
    const stats = new Map<string, number>();
    const failures: string[] = [];
    try {
      let indexes = [...Array(CASES).keys()];
      if (ONLY) {
        const [f, i] = ONLY.split(':');
        indexes = f === name ? [Number(i)] : [];
      }
      for (const i of indexes) {
        const r = new Rand(caseSeed(index, i));
        const m = new Mutation(image, map);
        const what = mutate(r, m);
        if (TRACE) fs.writeFileSync(TRACE, `DEVMAPPER_FUZZ_SEED=${SEED} DEVMAPPER_FUZZ_CASE=${name}:${i}: ${what}\n`);
        file.apply(m.blocks, m.truncate);
        const problems = await check(file.path, pairs, stats);
        file.restore();
        if (problems.length) {
          failures.push(`DEVMAPPER_FUZZ_SEED=${SEED} DEVMAPPER_FUZZ_CASE=${name}:${i}: ${what}\n    ${problems.join('\n    ')}`);
          if (failures.length >= 20) break;
        }
      }
    } finally {
      file.close();
    }
    const summary = [...stats].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${String(n).padStart(6)}  ${k}`).join('\n');
    if (failures.length) throw new Error(`${failures.length} failing case(s), seed ${SEED}:\n${failures.join('\n')}\n\noutcomes:\n${summary}`);
    if (!ONLY) {
      // Not vacuous: cases got through, and the reader refused them for many different reasons.
      const reasons = [...stats.keys()].filter((k) => k.startsWith('read: ERR_DM_METADATA'));
      expect(stats.get('read: ok') ?? 0).toBeGreaterThan(CASES / 20);
      expect(reasons.length).toBeGreaterThanOrEqual(15);
    }
  });
});

// ---- built cases: one mutation each, with the answer known ------------------------------------------------

describe('built cases on the chain fixture', () => {
  const image = zlib.gunzipSync(fs.readFileSync(path.join(FIXTURES, 'chain.img.gz')));
  const map = mapImage(image);
  let file: ImageFile;
  let before: Read;
  let diffBefore: DiffRange[], untouchedBefore: DiffRange[];
  beforeAll(() => {
    file = new ImageFile(path.join(tmp, 'built.img'), image);
    before = ThinMetadata.readSync(file.path, { usage: true });
    diffBefore = ThinMetadata.diffSync(file.path, 0, 1);
    untouchedBefore = ThinMetadata.diffSync(file.path, 3, 4);
  });
  afterAll(() => file.close());
  afterEach(() => file.restore());

  const change = (fn: (m: Mutation) => void) => {
    const m = new Mutation(image, map);
    fn(m);
    file.apply(m.blocks, m.truncate);
  };
  const rootPointer = (id: number) => map.pointers.find((p) => p.kind === 'device root' && p.from.tree === 'top' && p.id === id)!;
  /** `length` one-entry internal nodes in blocks the reader does not read, in front of thin `id`'s root. */
  const chainBefore = (m: Mutation, id: number, length: number, end?: 'cycle') => {
    const p = rootPointer(id);
    const at = map.free.slice(0, length);
    at.forEach((b, i) => m.blocks.set(b, makeNode(b, false, [0n], [i + 1 < length ? BigInt(at[i + 1]) : end ? BigInt(at[0]) : BigInt(p.target)])));
    pointTo(m, p, BigInt(at[0]));
  };
  const refused = async (check: RegExp | string, fn: () => unknown, promised: () => Promise<unknown>) => {
    const want = { name: 'DevmapperError', code: 'ERR_DM_METADATA', block: expect.any(Number), check: typeof check === 'string' ? check : expect.stringMatching(check) };
    expect(fn).toThrow(expect.objectContaining(want));
    await expect(promised()).rejects.toMatchObject(want);
  };
  const readUsage = () => ThinMetadata.readSync(file.path, { usage: true });
  const readUsageAsync = () => ThinMetadata.read(file.path, { usage: true });

  test('the fixture is what these cases assume: thin 0 has a two-level tree that thin 1 partly shares', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);  // the standard CRC-32C check value
    expect(map.ids).toEqual([0, 1, 3, 4, 5]);
    const dev0 = [...map.nodes.values()].filter((n) => n.places.some((p) => p.tree === 'dev 0'));
    expect(Math.max(...dev0.flatMap((n) => n.places.map((p) => p.depth)))).toBe(2);
    expect(dev0.some((n) => n.places.some((p) => p.tree === 'dev 1'))).toBe(true);
    expect(diffBefore.length).toBeGreaterThan(0);
  });

  test('a mapping tree 16 levels deep (the kernel\'s limit) reads as before; 17 levels is refused by the usage walk and the diff', async () => {
    change((m) => chainBefore(m, 0, 14));
    expect(readUsage()).toEqual(before);
    expect(await readUsageAsync()).toEqual(before);
    expect(ThinMetadata.diffSync(file.path, 0, 1)).toEqual(diffBefore);
    expect(await ThinMetadata.diff(file.path, 1, 0)).toEqual(ThinMetadata.diffSync(file.path, 1, 0));
    file.restore();

    change((m) => chainBefore(m, 0, 15));
    expect(ThinMetadata.readSync(file.path).devices).toEqual(before.devices);  // without usage: no mapping tree is read
    await refused(/deeper than 16/, readUsage, readUsageAsync);
    await refused(/deeper than 16/, () => ThinMetadata.diffSync(file.path, 0, 1), () => ThinMetadata.diff(file.path, 0, 1));
    expect(ThinMetadata.diffSync(file.path, 3, 4)).toEqual(untouchedBefore);  // trees that do not pass through the chain
  });

  test('a cycle in a mapping tree is refused', async () => {
    change((m) => chainBefore(m, 0, 3, 'cycle'));
    await refused(/./, readUsage, readUsageAsync);
    await refused(/./, () => ThinMetadata.diffSync(file.path, 0, 1), () => ThinMetadata.diff(file.path, 0, 1));
  });

  test('a node in two places of one tree is refused; one root in two devices is sharing, as create_snap makes it', async () => {
    change((m) => {
      // A new root whose two children both lead to the old root, under different keys.
      const p = rootPointer(0);
      const [r, p1, p2] = map.free.slice(0, 3);
      m.blocks.set(p1, makeNode(p1, false, [0n], [BigInt(p.target)]));
      m.blocks.set(p2, makeNode(p2, false, [2n ** 20n], [BigInt(p.target)]));
      m.blocks.set(r, makeNode(r, false, [0n, 2n ** 20n], [BigInt(p1), BigInt(p2)]));
      pointTo(m, p, BigInt(r));
    });
    await refused(/./, readUsage, readUsageAsync);
    await refused(/./, () => ThinMetadata.diffSync(file.path, 0, 1), () => ThinMetadata.diff(file.path, 0, 1));
    file.restore();

    change((m) => pointTo(m, rootPointer(3), BigInt(rootPointer(1).target)));
    const md = readUsage();
    const one = md.usage!.devices.find((d) => d.id === 1)!, three = md.usage!.devices.find((d) => d.id === 3)!;
    const oneBefore = before.usage!.devices.find((d) => d.id === 1)!;
    expect({ ...three, id: 1 }).toEqual(one);
    expect([one.mapped, one.highestMappedBlock, one.exclusive]).toEqual([oneBefore.mapped, oneBefore.highestMappedBlock, 0]);
    expect(ThinMetadata.diffSync(file.path, 1, 3)).toEqual([]);
    expect(await readUsageAsync()).toEqual(md);
  });

  test('ids beyond the kernel\'s 2^24 - 1, sizes and counts beyond 2^53 are refused with the block and the check, never rounded', async () => {
    change((m) => highestIdTo(m, 2n ** 53n + 1n));
    await refused('thin id beyond 2^24 - 1', readUsage, readUsageAsync);
    file.restore();
    change((m) => highestIdTo(m, 2n ** 24n));
    await refused('thin id beyond 2^24 - 1', readUsage, readUsageAsync);
    file.restore();

    change((m) => { m.block(0).writeBigUInt64LE(2n ** 64n - 1n, SB.metaSmNrBlocks); m.fix(0, SALT.superblock); });
    await refused('metadata space map blocks beyond 2^53', readUsage, readUsageAsync);
    file.restore();

    // Thin 0's mapped_blocks in the details: 2^40 blocks of 64 KiB are 2^56 bytes.
    change((m) => {
      const [b, { facts }] = [...map.nodes].find(([, n]) => n.places.some((p) => p.tree === 'details'))!;
      m.block(b).writeBigUInt64LE(2n ** 40n, valueOffset(facts, facts.keys.indexOf(0n)));
      m.fix(b, SALT.node);
    });
    await refused('mapped blocks in bytes beyond 2^53', () => ThinMetadata.readSync(file.path), () => ThinMetadata.read(file.path));
    file.restore();

    // Thin 0's last mapping moved to virtual block k: fine at 2^30, beyond 2^53 bytes (and sectors) at 2^47.
    const lastLeaf = [...map.nodes.values()].filter((n) => n.facts.flags === LEAF && n.places.some((p) => p.tree === 'dev 0'))
      .sort((a, b) => Number(a.facts.keys[a.facts.nr - 1] - b.facts.keys[b.facts.nr - 1])).pop()!.facts;
    const moveLast = (k: bigint) => change((m) => { m.block(lastLeaf.block).writeBigUInt64LE(k, keyOffset(lastLeaf.nr - 1)); m.fix(lastLeaf.block, SALT.node); });
    moveLast(2n ** 30n);
    expect(readUsage().usage!.devices[0].highestMappedBlock).toBe(2 ** 30);
    expect(ThinMetadata.diffSync(file.path, 0, 5).some((r) => r.begin === 2 ** 30 && r.kind === 'leftOnly')).toBe(true);
    file.restore();
    // 2^63 - 1 once overflowed int64 (highest + 1); 2^63 and above once read as a negative highest that hid the
    // mapping (the read gave block 313); 2^64 - 1 is the walk's open upper bound, never a key.
    const refusals: [bigint, string, string][] = [
      [2n ** 47n, 'highest mapped block in bytes beyond 2^53', 'mapped virtual block in sectors beyond 2^53'],
      [2n ** 63n - 1n, 'highest mapped block beyond 2^53', 'mapped virtual block beyond 2^53'],
      [2n ** 63n, 'mapped virtual block beyond 2^63', 'mapped virtual block beyond 2^53'],
      [2n ** 64n - 1n, 'btree keys outside the range the parent gives', 'btree keys outside the range the parent gives'],
    ];
    for (const [k, read, diff] of refusals) {
      file.restore();
      moveLast(k);
      await refused(read, readUsage, readUsageAsync);
      await refused(diff, () => ThinMetadata.diffSync(file.path, 0, 5), () => ThinMetadata.diff(file.path, 0, 5));
    }
  });

  function highestIdTo(m: Mutation, to: bigint): void {
    const id = BigInt(map.ids[map.ids.length - 1]);
    for (const [b, { facts, places }] of map.nodes) {
      if (facts.flags !== LEAF || !places.some((pl) => pl.tree === 'details' || pl.tree === 'top')) continue;
      const i = facts.keys.indexOf(id);
      if (i < 0) continue;
      m.block(b).writeBigUInt64LE(to, keyOffset(i));
      m.fix(b, SALT.node);
    }
  }
});
