// The free-space guard: a pool may keep a minimum of free data and metadata space (Docker's dm.min_free_space,
// 10 % by default there), below which createVolume and snapshot are refused with ERR_DM_POOL_FULL before any
// change. Writes to existing volumes are not limited: the guard leaves room for them. A volume's virtual size
// is never compared (over-provisioning stays allowed). The setting lives in the pool's registry, so every
// process that opens the pool applies it (a registry store that cannot keep it: a file beside the registry,
// `<registryDir>/min-free-space.json`, where earlier versions kept it for every pool).
import fs from 'node:fs';
import path from 'node:path';
import { dmError } from '../core/errors';
import { METADATA_BLOCK_SIZE, SECTOR_SIZE, parseSize } from '../core/units';
import { checkOptions, show } from '../core/validate';
import type { ThinPoolStatusOk } from '../targets';
import type { RegistryStore } from './registry';
import { atomicWrite } from './pool-files';

/** A limit: bytes (a non-negative integer, or text such as '1G'), or a percentage of the space ('10%'). */
export type FreeSpaceLimit = number | string;
/** Per space; a bare limit means both. */
export type MinFreeSpace = FreeSpaceLimit | {
  /** The data space's limit. */
  data?: FreeSpaceLimit;
  /** The metadata space's limit. */
  metadata?: FreeSpaceLimit;
};


/** One space's limit, as checked: a percentage 0..100 or a byte count. */
export type Limit = { percent: number } | { bytes: number };
/** The setting as stored and applied: each space's limit, if it has one. */
export interface FreeSpaceSetting { data?: Limit; metadata?: Limit }

const PERCENT = /^(\d{1,3}(?:\.\d+)?)%$/;

function checkLimit(v: unknown, what: string, device?: string): Limit {
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0)
      throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} must be bytes (a non-negative integer), a size such as '1G' or a percentage such as '10%', got ${show(v)}`, device);
    return { bytes: v };
  }
  if (typeof v !== 'string') throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} must be bytes, a size such as '1G' or a percentage such as '10%', got ${show(v)}`, device);
  const m = PERCENT.exec(v.trim());
  if (m) {
    const percent = Number(m[1]);
    if (!(percent <= 100)) throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} ${show(v)} is more than 100%`, device);
    return { percent };
  }
  try {
    return { bytes: parseSize(v) };
  } catch {
    throw dmError('ERR_DM_INVALID_ARGUMENT', `${what} ${show(v)} is neither a size such as '1G' nor a percentage such as '10%'`, device);
  }
}

/** The minFreeSpace option, checked strictly; null (or undefined) turns the guard off. */
export function checkMinFreeSpace(v: unknown, device?: string): FreeSpaceSetting {
  if (v === undefined || v === null) return {};
  if (typeof v === 'number' || typeof v === 'string') {
    const l = checkLimit(v, 'minFreeSpace', device);
    return { data: l, metadata: l };
  }
  const o = checkOptions<{ data?: unknown; metadata?: unknown }>(v, ['data', 'metadata'], 'minFreeSpace');
  const s: FreeSpaceSetting = {};
  if (o.data !== undefined) s.data = checkLimit(o.data, 'minFreeSpace.data', device);
  if (o.metadata !== undefined) s.metadata = checkLimit(o.metadata, 'minFreeSpace.metadata', device);
  return s;
}

const FILE = 'min-free-space.json';

// A stored setting (JSON text) read back strictly; `where` names the store in the error.
function parseSetting(text: string, where: string): FreeSpaceSetting {
  try {
    return checkMinFreeSpace(minFreeSpaceOption(JSON.parse(text) as FreeSpaceSetting) ?? null);
  } catch {
    throw dmError('ERR_DM_POOL_STATE', `${where} holds no minFreeSpace setting: ${show(text)}`);
  }
}

/** The setting saved beside the registry (none saved: no guard). */
export function readMinFreeSpace(registryDir: string | undefined): FreeSpaceSetting {
  if (!registryDir) return {};
  let text: string;
  try {
    text = fs.readFileSync(path.join(registryDir, FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw e;
  }
  return parseSetting(text, path.join(registryDir, FILE));
}

/** Saves the setting beside the registry (an empty one removes the file). */
export function writeMinFreeSpace(registryDir: string, s: FreeSpaceSetting): void {
  const file = path.join(registryDir, FILE);
  if (!s.data && !s.metadata) {
    fs.rmSync(file, { force: true });
    return;
  }
  fs.mkdirSync(registryDir, { recursive: true });
  atomicWrite(file, JSON.stringify(s));
}

const describe = (l: Limit) => ('percent' in l ? `${l.percent}%` : `${l.bytes} bytes`);

/**
 * Refuses `what` (a create or a snapshot) with ERR_DM_POOL_FULL when the pool's free data or metadata space,
 * in status `s`, is below its limit. `blockSize` is the pool's data block size in sectors.
 */
export function checkFreeSpace(pool: string, what: string, s: ThinPoolStatusOk, blockSize: number, setting: FreeSpaceSetting): void {
  const spaces = [
    ['data', setting.data, s.data.total - s.data.used, s.data.total, blockSize * SECTOR_SIZE],
    ['metadata', setting.metadata, s.metadata.total - s.metadata.used, s.metadata.total, METADATA_BLOCK_SIZE],
  ] as const;
  for (const [space, limit, freeBlocks, totalBlocks, blockBytes] of spaces) {
    if (!limit) continue;
    const freeBytes = freeBlocks * blockBytes;
    const short = 'percent' in limit ? freeBlocks * 100 < limit.percent * totalBlocks : freeBytes < limit.bytes;
    if (short) {
      const pct = totalBlocks > 0 ? Math.floor((freeBlocks * 1000) / totalBlocks) / 10 : 0;
      throw dmError('ERR_DM_POOL_FULL', `${what} refused: ${freeBytes} bytes of ${space} space are free (${pct}% of ${totalBlocks * blockBytes}), below the pool's minFreeSpace of ${describe(limit)}; grow${space === 'data' ? 'Data' : 'Metadata'}() or delete volumes`,
        pool, { space, freeBytes });
    }
  }
}

/** Refuses a snapshot of an active origin in a pool out of data space: suspending the origin would wait on its queued writes. */
export function refuseIfOutOfData(pool: string, what: string, s: ThinPoolStatusOk): void {
  if (s.mode === 'out_of_data_space')
    throw dmError('ERR_DM_POOL_FULL', `${what} refused: the pool is out of data space (mode out_of_data_space), and suspending the active origin would wait on its queued writes; growData() brings it back`,
      pool, { space: 'data', freeBytes: 0, mode: 'out_of_data_space' });
}

/**
 * A pool's guard. Its setting is read from the registry at each check, under the pool's lock (another process
 * may have changed it); the last one parsed is kept while the stored text is the same. A registry store without
 * minFreeSpace()/setMinFreeSpace() has it in the file beside the registry, or, with no registry folder, in this
 * process.
 */
export class FreeSpaceGuard {
  private local: FreeSpaceSetting = {};
  private parsed?: { text: string; setting: FreeSpaceSetting };
  /** A file an earlier version saved that could not be moved into the registry: read while the registry has none. */
  private legacyFile = false;

  constructor(private readonly registry: RegistryStore, private readonly registryDir: string | undefined) {
    this.adoptFile();
  }

  get setting(): FreeSpaceSetting {
    const r = this.registry;
    if (!r.minFreeSpace || !r.setMinFreeSpace) return this.registryDir ? readMinFreeSpace(this.registryDir) : this.local;
    const text = r.minFreeSpace();
    if (text === undefined) return this.legacyFile ? readMinFreeSpace(this.registryDir) : {};
    if (this.parsed?.text !== text) this.parsed = { text, setting: parseSetting(text, 'the registry') };
    return this.parsed.setting;
  }

  set(s: FreeSpaceSetting): void {
    const r = this.registry;
    const none = !s.data && !s.metadata;
    if (r.minFreeSpace && r.setMinFreeSpace) {
      r.setMinFreeSpace(none ? null : JSON.stringify(s));
      if (this.registryDir) fs.rmSync(path.join(this.registryDir, FILE), { force: true });
      this.legacyFile = false;
    } else if (this.registryDir) {
      writeMinFreeSpace(this.registryDir, s);
    } else {
      this.local = s;
    }
  }

  check(pool: string, what: string, s: ThinPoolStatusOk, blockSize: number): void {
    checkFreeSpace(pool, what, s, blockSize, this.setting);
  }

  // A setting an earlier version saved beside the registry moves into it (the registry's own wins), then the
  // file goes; a kill in between leaves both, and the next open finishes. If the registry cannot be written
  // (a read-only folder), the file stays and is read instead.
  private adoptFile(): void {
    const r = this.registry;
    if (!this.registryDir || !r.minFreeSpace || !r.setMinFreeSpace) return;
    const file = path.join(this.registryDir, FILE);
    if (!fs.existsSync(file)) return;
    try {
      if (r.minFreeSpace() === undefined) {
        const s = readMinFreeSpace(this.registryDir);
        if (s.data || s.metadata) r.setMinFreeSpace(JSON.stringify(s));
      }
      fs.rmSync(file, { force: true });
    } catch {
      this.legacyFile = true;
    }
  }
}

/** The setting as the minFreeSpace option would give it (undefined: no guard). */
export function minFreeSpaceOption(s: FreeSpaceSetting): { data?: FreeSpaceLimit; metadata?: FreeSpaceLimit } | undefined {
  const opt = (l: Limit | undefined) => (l === undefined ? undefined : 'percent' in l ? `${l.percent}%` : l.bytes);
  if (!s.data && !s.metadata) return undefined;
  return { ...(s.data && { data: opt(s.data) }), ...(s.metadata && { metadata: opt(s.metadata) }) };
}
