// What a file-backed pool keeps beside its files, so that it can be brought back (attach) and so that a
// create or destroy killed half-way can be told from a pool in use:
// - `<registryDir>/pool.json`: the pool's table settings (block size, low water mark, features), written
//   atomically when the pool is made;
// - `<dataFile>.incomplete`: present while a create or a destroy with deleteFiles runs, naming the process
//   (pid and start time). Left by a dead process, it says the files are not a pool to attach but leftovers a
//   new create may clear.
import fs from 'node:fs';
import path from 'node:path';
import { dmError } from '../core/errors';
import type { ThinPoolFeatures } from '../targets';

export interface PoolConfig {
  blockSize: number;
  lowWaterMark: number;
  features: ThinPoolFeatures;
}

/** The settings a pool's table carries that attach() loads again. */
export function configOf(p: { blockSize: number; lowWaterMark: number; features?: ThinPoolFeatures }): PoolConfig {
  return { blockSize: p.blockSize, lowWaterMark: p.lowWaterMark, features: p.features ?? {} };
}

const CONFIG = 'pool.json';

export function writePoolConfig(registryDir: string, c: PoolConfig): void {
  fs.mkdirSync(registryDir, { recursive: true });
  atomicWrite(path.join(registryDir, CONFIG), JSON.stringify(c));
}

export function readPoolConfig(registryDir: string): PoolConfig | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(registryDir, CONFIG), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const c = JSON.parse(text) as PoolConfig;
  if (!Number.isSafeInteger(c.blockSize) || !Number.isSafeInteger(c.lowWaterMark) || typeof c.features !== 'object')
    throw dmError('ERR_DM_POOL_STATE', `${path.join(registryDir, CONFIG)} is not a pool's settings`);
  return c;
}

// Written to a temporary name, synced, renamed over: a reader sees the old file or the new one, whole.
export function atomicWrite(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  syncDir(path.dirname(file));
}

function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

// ---- the incomplete marker --------------------------------------------------------------------------------

export interface IncompleteMarker {
  op: 'create' | 'destroy';
  pid: number;
  /** The process's start time (clock ticks since boot, `/proc/<pid>/stat`), so a reused pid is not taken for it. */
  start: string;
}

export const markerPath = (dataFile: string): string => `${dataFile}.incomplete`;

/** A process's start time (field 22 of `/proc/<pid>/stat`), or undefined if it does not run. */
export function processStart(pid: number): string | undefined {
  return processStat(pid)?.start;
}

/** A process's state (field 3: 'Z' for one that exited and awaits its parent) and start time, or undefined. */
export function processStat(pid: number): { state: string; start: string } | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: f[0], start: f[19] };
  } catch {
    return undefined;
  }
}

export function readMarker(dataFile: string): IncompleteMarker | undefined {
  let text: string;
  try {
    text = fs.readFileSync(markerPath(dataFile), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    return JSON.parse(text) as IncompleteMarker;
  } catch {
    return { op: 'create', pid: 0, start: '' };  // cut short by a crash while being written: its owner is gone
  }
}

/** Whether the process that wrote the marker still runs (this one included: its create may be under way). */
export function markerOwnerAlive(m: IncompleteMarker): boolean {
  return m.pid > 0 && processStart(m.pid) === m.start;
}

export function writeMarker(dataFile: string, op: IncompleteMarker['op']): void {
  atomicWrite(markerPath(dataFile), JSON.stringify({ op, pid: process.pid, start: processStart(process.pid) ?? '' }));
}

export function removeMarker(dataFile: string): void {
  fs.rmSync(markerPath(dataFile), { force: true });
}

/** Removes a file pool's files: data, metadata, and the registry's own files (the folder too, once empty). */
export function removePoolFiles(dataFile: string | undefined, metaFile: string | undefined, registryDir: string | undefined): void {
  for (const f of [metaFile, dataFile]) if (f) fs.rmSync(f, { force: true });
  if (dataFile) removeDeadTemporaries(path.dirname(dataFile), `${path.basename(markerPath(dataFile))}.`);
  if (registryDir) {
    // With the old registry kept at its migration to upstream LMDB, and the folder a killed migration left.
    for (const f of ['registry.mdb', 'registry.mdb-lock', 'registry.mdb.lmdbjs-v2.bak', 'lock', CONFIG]) fs.rmSync(path.join(registryDir, f), { force: true });
    fs.rmSync(path.join(registryDir, 'registry.mdb.migrating'), { force: true, recursive: true });
    removeDeadTemporaries(registryDir, `${CONFIG}.`);
    try { fs.rmdirSync(registryDir); } catch { /* not empty: it holds something of the user's */ }
  }
}

// `<name>.<pid>.tmp` files that atomicWrite() of a process killed before its rename left.
function removeDeadTemporaries(dir: string, prefix: string): void {
  let entries: string[];
  try { entries = fs.readdirSync(dir); } catch { return; }
  for (const e of entries) {
    const m = e.startsWith(prefix) ? /^(\d+)\.tmp$/.exec(e.slice(prefix.length)) : null;
    if (m && Number(m[1]) !== process.pid && processStart(Number(m[1])) === undefined) fs.rmSync(path.join(dir, e), { force: true });
  }
}

// ---- the metadata superblock, read offline ----------------------------------------------------------------

const SUPERBLOCK_MAGIC = 27022010n;

/** What block 0 of a pool's metadata says: blank (never formatted), or a pool's superblock and its data block size. */
export function readSuperblock(metaFile: string): { formatted: false } | { formatted: true; blockSize: number } {
  const buf = Buffer.alloc(4096);
  const fd = fs.openSync(metaFile, 'r');
  try { fs.readSync(fd, buf, 0, 4096, 0); } finally { fs.closeSync(fd); }
  if (buf.every((b) => b === 0)) return { formatted: false };
  if (buf.readBigUInt64LE(32) !== SUPERBLOCK_MAGIC)
    throw dmError('ERR_DM_POOL_STATE', `${metaFile} holds no thin-pool superblock (wrong magic)`);
  return { formatted: true, blockSize: buf.readUInt32LE(336) };
}
