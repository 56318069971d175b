// dm-thin metadata images for the metadata tests, written independently of native/thin_metadata.cc from the
// format reference (shared/reference/thin-metadata.md §1, §2): the checksum, the node layout, a walk that
// finds every block the reader reads (superblocks, the details, top-level and per-device mapping trees, and
// the same through a held metadata snapshot), and an image file whose blocks can be changed and put back.
import fs from 'node:fs';

export const BLOCK = 4096;
export const SALT = { superblock: 160774, node: 121107, bitmap: 240779, index: 160478 } as const;
export const INTERNAL = 1, LEAF = 2;

// ---- checksum: csum = ~crc32c_std(bytes 4..4095) ^ salt ------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let i = 0; i < 8; i++) c = (c >>> 1) ^ (0x82f63b78 & -(c & 1));
    t[b] = c >>> 0;
  }
  return t;
})();

/** The standard CRC-32C (Castagnoli; init and xorout 0xFFFFFFFF): "123456789" gives 0xE3069283. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = (c >>> 8) ^ CRC_TABLE[(c ^ bytes[i]) & 0xff];
  return (c ^ 0xffffffff) >>> 0;
}

export const checksumOf = (block: Buffer, salt: number): number => ((~crc32c(block.subarray(4, BLOCK))) ^ salt) >>> 0;
export const checksumOk = (block: Buffer, salt: number): boolean => block.readUInt32LE(0) === checksumOf(block, salt);
export function fixChecksum(block: Buffer, salt: number): void { block.writeUInt32LE(checksumOf(block, salt), 0); }

// ---- superblock (§1) -----------------------------------------------------------------------------------

/** Byte offsets of the superblock's fields. */
export const SB = {
  csum: 0, flags: 4, blocknr: 8, magic: 32, version: 40, time: 44, transactionId: 48, heldRoot: 56,
  dataSmNrBlocks: 64, dataSmNrAllocated: 72, dataSmBitmapRoot: 80, dataSmRefCountRoot: 88,
  metaSmNrBlocks: 192, metaSmNrAllocated: 200, metaSmBitmapRoot: 208, metaSmRefCountRoot: 216,
  mappingRoot: 320, detailsRoot: 328, dataBlockSize: 336, metadataBlockSize: 340, metadataNrBlocks: 344,
  compatFlags: 352, compatRoFlags: 356, incompatFlags: 360,
} as const;

// ---- btree nodes (§2) ----------------------------------------------------------------------------------

export interface NodeFacts {
  block: number;
  flags: number;
  nr: number;
  max: number;
  valueSize: number;
  keys: bigint[];
}
export const keyOffset = (i: number): number => 32 + 8 * i;
export const valueOffset = (n: { max: number; valueSize: number }, i: number): number => 32 + 8 * n.max + n.valueSize * i;

export function parseNode(block: Buffer, at: number): NodeFacts {
  const nr = block.readUInt32LE(16), max = block.readUInt32LE(20), valueSize = block.readUInt32LE(24);
  const keys: bigint[] = [];
  for (let i = 0; i < nr; i++) keys.push(block.readBigUInt64LE(keyOffset(i)));
  return { block: at, flags: block.readUInt32LE(4), nr, max, valueSize, keys };
}

/** A node of its own, checksummed: keys and 8-byte values (child blocks, or block_time mappings). */
export function makeNode(at: number, leaf: boolean, keys: bigint[], values: bigint[], valueSize = 8): Buffer {
  const max = 3 * Math.floor(Math.floor((BLOCK - 32) / (8 + valueSize)) / 3);
  const b = Buffer.alloc(BLOCK);
  b.writeUInt32LE(leaf ? LEAF : INTERNAL, 4);
  b.writeBigUInt64LE(BigInt(at), 8);
  b.writeUInt32LE(keys.length, 16);
  b.writeUInt32LE(max, 20);
  b.writeUInt32LE(valueSize, 24);
  keys.forEach((k, i) => b.writeBigUInt64LE(k, keyOffset(i)));
  values.forEach((v, i) => b.writeBigUInt64LE(v, valueOffset({ max, valueSize }, i)));
  fixChecksum(b, SALT.node);
  return b;
}

// ---- the walk: every block the reader reads ------------------------------------------------------------

/** Where a node sits in one tree: its tree, depth (root 1) and the blocks from the root down to it. */
export interface Place { tree: string; depth: number; path: number[] }

/** A block number stored in a block: a superblock root field, an internal node's child, a device's mapping root. */
export interface Pointer {
  holder: number;
  offset: number;
  salt: number;
  target: number;
  /** The pointing node's place (for a superblock field: an empty path). */
  from: Place;
  kind: 'superblock' | 'child' | 'device root';
  /** A device root's thin id. */
  id?: number;
}

export interface ImageMap {
  size: number;
  blocks: number;
  superblocks: number[];
  heldRoot: number;
  /** Every node by block, with each place it has (a node shared between devices has several). */
  nodes: Map<number, { facts: NodeFacts; places: Place[] }>;
  pointers: Pointer[];
  /** Thin ids of the live view, ascending. */
  ids: number[];
  /** Blocks inside the metadata the reader never reads (zero, stale, space maps): room for nodes a test builds. */
  free: number[];
}

export function blockOf(image: Buffer, b: number): Buffer {
  return image.subarray(b * BLOCK, (b + 1) * BLOCK);
}

/** Walks a valid image (a fixture): it throws on anything unexpected, as fixtures have nothing of that. */
export function mapImage(image: Buffer): ImageMap {
  const blocks = Math.floor(image.length / BLOCK);
  const map: ImageMap = { size: image.length, blocks, superblocks: [0], heldRoot: 0, nodes: new Map(), pointers: [], ids: [], free: [] };
  const sb0 = blockOf(image, 0);
  if (!checksumOk(sb0, SALT.superblock)) throw new Error('fixture superblock checksum');
  map.heldRoot = Number(sb0.readBigUInt64LE(SB.heldRoot));
  const views: [string, number][] = [['', 0]];
  if (map.heldRoot) { views.push(['held ', map.heldRoot]); map.superblocks.push(map.heldRoot); }

  const walk = (tree: string, root: number, leafValueSize: number, onLeaf?: (key: bigint, value: Buffer, place: Place) => void) => {
    const visit = (b: number, path: number[]) => {
      const data = blockOf(image, b);
      if (!checksumOk(data, SALT.node) || Number(data.readBigUInt64LE(8)) !== b) throw new Error(`fixture node ${b}`);
      const facts = parseNode(data, b);
      const place: Place = { tree, depth: path.length + 1, path: [...path, b] };
      const entry = map.nodes.get(b) ?? { facts, places: [] };
      entry.places.push(place);
      map.nodes.set(b, entry);
      for (let i = 0; i < facts.nr; i++) {
        const off = valueOffset(facts, i);
        if (facts.flags === INTERNAL) {
          const child = Number(data.readBigUInt64LE(off));
          map.pointers.push({ holder: b, offset: off, salt: SALT.node, target: child, from: place, kind: 'child' });
          visit(child, place.path);
        } else if (onLeaf) {
          onLeaf(facts.keys[i], data.subarray(off, off + leafValueSize), place);
        }
      }
    };
    visit(root, []);
  };

  for (const [label, sbAt] of views) {
    const sb = blockOf(image, sbAt);
    const top = Number(sb.readBigUInt64LE(SB.mappingRoot)), details = Number(sb.readBigUInt64LE(SB.detailsRoot));
    const none: Place = { tree: `${label}superblock`, depth: 0, path: [] };
    map.pointers.push({ holder: sbAt, offset: SB.mappingRoot, salt: SALT.superblock, target: top, from: none, kind: 'superblock' });
    map.pointers.push({ holder: sbAt, offset: SB.detailsRoot, salt: SALT.superblock, target: details, from: none, kind: 'superblock' });
    walk(`${label}details`, details, 24);
    const roots: [bigint, number, Place][] = [];
    walk(`${label}top`, top, 8, (id, value, place) => roots.push([id, Number(value.readBigUInt64LE(0)), place]));
    for (const [id, root, place] of roots) {
      const holder = place.path[place.path.length - 1];
      const facts = map.nodes.get(holder)!.facts;
      const i = facts.keys.indexOf(id);
      map.pointers.push({ holder, offset: valueOffset(facts, i), salt: SALT.node, target: root, from: place, kind: 'device root', id: Number(id) });
      walk(`${label}dev ${id}`, root, 8);
      if (!label) map.ids.push(Number(id));
    }
  }
  if (map.heldRoot) map.pointers.push({ holder: 0, offset: SB.heldRoot, salt: SALT.superblock, target: map.heldRoot, from: { tree: 'superblock', depth: 0, path: [] }, kind: 'superblock' });
  const limit = Math.min(blocks, Number(sb0.readBigUInt64LE(SB.metaSmNrBlocks)));
  for (let b = 1; b < limit; b++) if (!map.nodes.has(b) && !map.superblocks.includes(b)) map.free.push(b);
  return map;
}

// ---- an image file whose blocks a case changes, then puts back ------------------------------------------

/** The fixture's bytes in a file; `apply` writes changed blocks (or cuts the file), `restore` undoes it. */
export class ImageFile {
  readonly path: string;
  private readonly fd: number;
  private changed = new Set<number>();
  private cutAt: number | null = null;
  constructor(path: string, readonly original: Buffer) {
    this.path = path;
    fs.writeFileSync(path, original);
    this.fd = fs.openSync(path, 'r+');
  }
  /** Writes the changed blocks and cuts the file at `truncate` bytes. */
  apply(blocks: Map<number, Buffer>, truncate?: number): void {
    for (const [b, data] of blocks) {
      fs.writeSync(this.fd, data, 0, BLOCK, b * BLOCK);
      this.changed.add(b);
    }
    if (truncate !== undefined) {
      fs.ftruncateSync(this.fd, truncate);
      this.cutAt = truncate;
    }
  }
  restore(): void {
    if (this.cutAt !== null) {
      fs.ftruncateSync(this.fd, this.original.length);
      // The cut zeroed the tail: write its blocks back (those that were zero already are).
      for (let b = Math.floor(this.cutAt / BLOCK); b * BLOCK < this.original.length; b++)
        if (!blockOf(this.original, b).every((x) => x === 0)) this.changed.add(b);
      this.cutAt = null;
    }
    for (const b of this.changed) fs.writeSync(this.fd, this.original, b * BLOCK, BLOCK, b * BLOCK);
    this.changed.clear();
  }
  close(): void { fs.closeSync(this.fd); }
}
