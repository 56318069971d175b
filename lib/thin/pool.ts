// ThinPool: a thin-pool device, from two block devices or from two sparse files on loop devices, with a
// durable registry of its volumes. Every change to the pool's metadata follows one protocol, Docker's, with
// its registry update folded into the first write:
//   1. record the intended change (pending, with the pool's transaction id before and after), and in the same
//      atomic write its effect on the volume records (the new record; or the deleted one gone, its id freed)
//   2. send the pool message (create_thin / create_snap / delete)
//   3. commit: set_transaction_id <before> <after>.
// Until the commit the records say what the change will make them; the pending record and the pool's
// transaction id say whether it happened. The pending record then stays until the next change replaces it
// (the pool's transaction id equal to its "after" proves it committed) or close() clears it. So a change
// costs one durable write (an LMDB commit, ~1 ms in the test VM), not two. A process
// killed anywhere leaves a pending record that open() (or the next change) completes or rolls back by
// comparing it with the pool's transaction id. `hooks.step` marks each step for crash tests.
import fs from 'node:fs';
import path from 'node:path';
import { Block, formatDev } from '../block';
import { DeviceMapper } from '../device-mapper';
import { dmError, DevmapperError } from '../errors';
import { Loop, LoopDevice } from '../loop';
import { DevNumber } from '../native';
import { Bytes, Sectors, bytes, bytesToSectors, parseSize, sectors } from '../units';
import { checkName } from '../validate';
import { line, parseThinPoolStatus, thinPool, ThinPoolFeatures, ThinPoolParams, ThinPoolStatus, ThinPoolStatusOk, checkBlockSize, MAX_METADATA_SECTORS } from '../targets';
import { IntendedChange, LmdbRegistry, PendingChange, RegistryStore, RegistryWrite, VolumeRecord, sameChange } from './registry';
import { retryWhileBusy } from './busy';
import { PoolLock } from './lock';
import { DeactivateOptions, ThinVolume } from './volume';

export type Step = 'intent' | 'message' | 'commit';

export interface ThinPoolHooks {
  /** Called after each step of a change; a crash test can kill the process here. */
  step?(step: Step, change: PendingChange): void;
}

export interface ThinPoolOptions {
  dm?: DeviceMapper;
  /** Where the registry lives. Default for file-backed pools: `<data file>.registry` beside the data file. */
  registryDir?: string;
  /** Another store behind the RegistryStore interface. */
  registry?: RegistryStore;
  hooks?: ThinPoolHooks;
}

export interface ThinPoolCreateOptions extends ThinPoolOptions, ThinPoolFeatures {
  name: string;
  /** Block devices to build on... */
  metadataDevice?: string;
  dataDevice?: string;
  /** ...or sparse files to create and attach to loop devices (autoclear). */
  dataFile?: string;
  metadataFile?: string;
  /** Bytes (or '10G') for files. */
  dataSize?: Bytes | number | string;
  metadataSize?: Bytes | number | string;
  /** Data block size in sectors (default 128 = 64 KiB). */
  blockSize?: number;
  /** Free data blocks at which the pool raises an event (default: 10% of the data blocks). */
  lowWaterMark?: number;
}

export interface VolumeListEntry extends VolumeRecord { active: boolean }

const toBytes = (v: Bytes | number | string): Bytes => (typeof v === 'string' ? parseSize(v) : bytes(v));

/** A sensible metadata size: the kernel docs' 48 bytes per data block, doubled for snapshots, >= 2 MiB, capped. */
export function defaultMetadataSize(dataSize: Bytes, blockSize: Sectors): Bytes {
  const blocks = Math.ceil(dataSize / (blockSize * 512));
  const mib = 2 ** 20;
  const want = Math.max(2 * mib, Math.ceil((blocks * 48 * 2) / mib) * mib);
  return Math.min(want, MAX_METADATA_SECTORS * 512) as Bytes;
}

/**
 * The backing file of a loop device this library attached for a pool. Ours are the autoclear ones (they go
 * with the pool); a loop someone else set up is theirs, and so is its file: we neither detach nor delete it.
 */
function ownLoopBackingFile(dev: string): string | undefined {
  try {
    if (fs.readFileSync(`/sys/dev/block/${dev}/loop/autoclear`, 'utf8').trim() !== '1') return undefined;
    return fs.readFileSync(`/sys/dev/block/${dev}/loop/backing_file`, 'utf8').trimEnd();
  } catch {
    return undefined;
  }
}

function registryDirFor(name: string, o: ThinPoolOptions, dataFile: string | undefined): string {
  if (o.registryDir) return o.registryDir;
  if (dataFile) return `${dataFile}.registry`;
  throw dmError('ERR_DM_INVALID_ARGUMENT', 'a pool on block devices needs registryDir (or registry)', name);
}

export class ThinPool {
  readonly dm: DeviceMapper;
  private readonly lock: PoolLock;
  private readonly ownsDm: boolean;
  private committed?: PendingChange;

  private constructor(
    readonly name: string,
    readonly dev: DevNumber,
    readonly params: ThinPoolParams,
    readonly files: { data?: string; metadata?: string },
    readonly registryDir: string | undefined,
    readonly registry: RegistryStore,
    dm: DeviceMapper | undefined,
    private readonly hooks: ThinPoolHooks,
  ) {
    this.ownsDm = !dm;
    this.dm = dm ?? new DeviceMapper();
    this.lock = new PoolLock(path.join(registryDir ?? '/run', registryDir ? 'lock' : `devmapper-${name}.lock`));
  }

  /** `major:minor` of the pool device, as thin tables name it. */
  get devSpec(): string { return formatDev(this.dev); }
  get blockSize(): Sectors { return this.params.blockSize; }

  /** Creates the pool. Everything done is undone if a later step fails. */
  static async create(o: ThinPoolCreateOptions): Promise<ThinPool> {
    const name = checkName(o.name, 'pool name');
    const blockSize = checkBlockSize(o.blockSize ?? 128);
    if (o.readOnly) throw dmError('ERR_DM_INVALID_ARGUMENT', 'a new pool cannot be read_only (the kernel refuses it at creation)', name);
    const onFiles = o.dataFile !== undefined || o.metadataFile !== undefined;
    if (onFiles === (o.dataDevice !== undefined || o.metadataDevice !== undefined))
      throw dmError('ERR_DM_INVALID_ARGUMENT', 'give either dataFile (+ metadataFile) or dataDevice + metadataDevice', name);
    if (!onFiles && (!o.dataDevice || !o.metadataDevice)) throw dmError('ERR_DM_INVALID_ARGUMENT', 'both dataDevice and metadataDevice are needed', name);
    let dataSize: Bytes | undefined, metaSize: Bytes | undefined;
    const dataFile = o.dataFile && path.resolve(o.dataFile);
    const metaFile = o.metadataFile ? path.resolve(o.metadataFile) : dataFile && `${dataFile}.meta`;
    if (onFiles) {
      if (!dataFile) throw dmError('ERR_DM_INVALID_ARGUMENT', 'dataFile is needed with metadataFile', name);
      if (o.dataSize === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'dataSize is needed for a file-backed pool', name);
      dataSize = toBytes(o.dataSize);
      bytesToSectors(dataSize);
      if (dataSize < blockSize * 512) throw dmError('ERR_DM_INVALID_SIZE', 'the data file must hold at least one block', name);
      metaSize = o.metadataSize !== undefined ? toBytes(o.metadataSize) : defaultMetadataSize(dataSize, blockSize);
      bytesToSectors(metaSize);
      for (const f of [dataFile, metaFile!]) if (fs.existsSync(f)) throw dmError('ERR_DM_INVALID_ARGUMENT', `${f} exists; open the pool instead, or remove it`, name);
    }
    const registryDir = o.registry ? o.registryDir : registryDirFor(name, o, dataFile);
    const dm = o.dm ?? new DeviceMapper();
    if (await dm.exists(name)) throw dmError('ERR_DM_INVALID_ARGUMENT', 'a dm device of that name exists', name);

    const undo: (() => Promise<void> | void)[] = [];
    const held: LoopDevice[] = [];
    try {
      let metaPath = o.metadataDevice!, dataPath = o.dataDevice!;
      if (onFiles) {
        for (const [f, size] of [[dataFile!, dataSize!], [metaFile!, metaSize!]] as const) {
          fs.writeFileSync(f, '', { flag: 'wx' });
          undo.push(() => fs.rmSync(f, { force: true }));
          fs.truncateSync(f, size);
        }
        const data = await Loop.attach(dataFile!, { autoclear: true });
        held.push(data);
        undo.push(() => data.release());
        const meta = await Loop.attach(metaFile!, { autoclear: true });
        held.push(meta);
        undo.push(() => meta.release());
        dataPath = data.path;
        metaPath = meta.path;
      }
      // A new pool needs zeroed metadata: the kernel formats it only when the superblock is blank.
      const fd = fs.openSync(metaPath, 'r+');
      try { fs.writeSync(fd, Buffer.alloc(4096), 0, 4096, 0); fs.fsyncSync(fd); } finally { fs.closeSync(fd); }

      const dataSectors = bytesToSectors(await Block.size(dataPath));
      const length = sectors(Math.floor(dataSectors / blockSize) * blockSize);
      if (length === 0) throw dmError('ERR_DM_INVALID_SIZE', 'the data device is smaller than one block', name);
      const metaDev = formatDev(await Block.deviceNumber(metaPath));
      const dataDev = formatDev(await Block.deviceNumber(dataPath));
      const params: ThinPoolParams = {
        metadataDev: metaDev, dataDev, blockSize,
        lowWaterMark: o.lowWaterMark ?? Math.floor(length / blockSize / 10),
        features: { skipBlockZeroing: o.skipBlockZeroing, ignoreDiscard: o.ignoreDiscard, noDiscardPassdown: o.noDiscardPassdown, errorIfNoSpace: o.errorIfNoSpace },
      };
      const info = await dm.createDevice(name, [line(thinPool, 0, length, params)], { uuid: `DEVMAPPER-POOL-${name}` });
      undo.push(() => dm.remove(name).then(() => undefined));
      for (const l of held) l.release();  // the pool holds the loops now; autoclear detaches them with it

      const registry = o.registry ?? LmdbRegistry.open(registryDir!);
      if (registry.count() > 0 || registry.pending())
        throw dmError('ERR_DM_POOL_STATE', `the registry at ${registryDir} holds volumes of an older pool; remove it first`, name);
      return new ThinPool(name, info.dev, thinPool.parse(thinPool.format(params)), { data: dataFile, metadata: metaFile },
        registryDir, registry, o.dm, o.hooks ?? {});
    } catch (e) {
      for (const u of undo.reverse()) { try { await u(); } catch { /* keep the first error */ } }
      if (!o.dm) dm.close();
      throw e;
    }
  }

  /** Opens an active pool: finds its devices, loop backing files and registry, and finishes an interrupted change. */
  static async open(name: string, o: ThinPoolOptions = {}): Promise<ThinPool> {
    checkName(name, 'pool name');
    const dm = o.dm ?? new DeviceMapper();
    try {
      const info = await dm.info(name);
      const table = await dm.table(name);
      if (table.length !== 1 || table[0].type !== 'thin-pool')
        throw dmError('ERR_DM_NOT_A_THIN_POOL', `its table is ${table.map((t) => t.type).join(', ') || 'empty'}`, name);
      const params = thinPool.parse(table[0].params);
      const dataFile = ownLoopBackingFile(params.dataDev);
      const metaFile = ownLoopBackingFile(params.metadataDev);
      const registryDir = o.registry ? o.registryDir : registryDirFor(name, o, dataFile);
      const registry = o.registry ?? LmdbRegistry.open(registryDir!);
      const pool = new ThinPool(name, info.dev, params, { data: dataFile, metadata: metaFile }, registryDir, registry, o.dm, o.hooks ?? {});
      await pool.lock.run(() => pool.recover());
      return pool;
    } catch (e) {
      if (!o.dm) dm.close();
      throw e;
    }
  }

  // ---- status and settings -------------------------------------------------------------------------

  async status(o: { noflush?: boolean } = {}): Promise<ThinPoolStatus> {
    const [t] = await this.dm.status(this.name, o);
    return parseThinPoolStatus(t.params);
  }

  async transactionId(): Promise<number> {
    const s = await this.status({ noflush: true });
    if (s.state !== 'ok') throw dmError('ERR_DM_POOL_STATE', `the pool reports ${s.state}`, this.name);
    return s.transactionId;
  }

  /**
   * Calls `onLow(status)` while the pool's free data blocks are at or below its low water mark: once at the
   * start if they already are, then at each event of the pool's (the kernel raises one when free blocks fall to
   * the mark, and on running out of space, a mode change or a resume) that finds them so. Growing the pool
   * (growData) ends it. Waits with DM_DEV_WAIT on a thread of its own; resolves when `signal` aborts.
   */
  async watchLowWater(onLow: (status: ThinPoolStatusOk) => void | Promise<void>, o: { signal: AbortSignal }): Promise<void> {
    const low = (s: ThinPoolStatus): s is ThinPoolStatusOk => s.state === 'ok' && s.data.total - s.data.used <= this.params.lowWaterMark;
    let { eventNr } = await this.dm.info(this.name);
    let status = await this.status({ noflush: true });
    while (!o.signal.aborted) {
      if (low(status)) await onLow(status);
      try {
        const r = await this.dm.wait(this.name, eventNr, { signal: o.signal, noflush: true });
        eventNr = r.info.eventNr;
        status = parseThinPoolStatus(r.status[0].params);
      } catch (e) {
        if ((e as DevmapperError).code === 'ERR_DM_ABORTED') return;
        throw e;
      }
    }
  }

  /** Reloads the pool table with new features (discard support cannot change after creation). */
  setFeatures(features: ThinPoolFeatures): Promise<void> {
    return this.reload({ ...this.params, features: { ...this.params.features, ...features } });
  }

  setLowWaterMark(blocks: number): Promise<void> {
    return this.reload({ ...this.params, lowWaterMark: blocks });
  }

  /**
   * Grows the pool's data device. For a pool on its own sparse file: the file is extended to `size` and its
   * loop told (LOOP_SET_CAPACITY). For a pool on block devices, grow the device first and call this without a
   * size. Then the table is reloaded with the new length (whole blocks). Volumes stay active throughout.
   */
  async growData(size?: Bytes | number | string): Promise<void> {
    await this.lock.run(async () => {
      const [current] = await this.dm.table(this.name);
      await this.growDevice(this.params.dataDev, this.files.data, size, undefined, async (deviceSectors) => {
        const length = sectors(Math.floor(deviceSectors / this.blockSize) * this.blockSize);
        if (length <= current.length) throw dmError('ERR_DM_INVALID_SIZE', `the data device holds ${length} sectors of whole blocks; the pool has ${current.length} already`, this.name);
        await this.reload(this.params, length);
      });
    });
  }

  /**
   * Grows the pool's metadata device (at most the kernel's ~15.88 GiB), the same way as growData(); the pool
   * takes up the new size when it resumes.
   */
  async growMetadata(size?: Bytes | number | string): Promise<void> {
    await this.lock.run(async () => {
      const before = await this.status();
      await this.growDevice(this.params.metadataDev, this.files.metadata, size, MAX_METADATA_SECTORS, async (deviceSectors) => {
        const blocks = Math.floor(deviceSectors / 8);  // 4 KiB metadata blocks
        if (before.state === 'ok' && blocks <= before.metadata.total)
          throw dmError('ERR_DM_INVALID_SIZE', `the metadata device holds ${blocks} blocks; the pool has ${before.metadata.total} already`, this.name);
        await this.reload(this.params);
      });
    });
  }

  // Extends the pool's own backing file to `size` (only ever grows) and updates its loop, then hands the
  // device's size in sectors (at most `max`) to `apply`. If that fails, the file is shrunk back: the pool's
  // table still has the old length. Without a size, the device must have grown already.
  private async growDevice(dev: string, file: string | undefined, size: Bytes | number | string | undefined, max: number | undefined,
    apply: (deviceSectors: Sectors) => Promise<void>): Promise<void> {
    const node = `/dev/${path.basename(fs.readlinkSync(`/sys/dev/block/${dev}`))}`;
    let undo = async () => {};
    if (size !== undefined) {
      if (!file) throw dmError('ERR_DM_INVALID_ARGUMENT', 'this pool is on block devices: grow the device, then call without a size', this.name);
      const want = toBytes(size), had = fs.statSync(file).size;
      bytesToSectors(want);
      if (max !== undefined && want > max * 512) throw dmError('ERR_DM_INVALID_SIZE', `at most ${max} sectors`, this.name);
      if (want <= had) throw dmError('ERR_DM_INVALID_SIZE', `${file} is already ${had} bytes; pools only grow`, this.name);
      fs.truncateSync(file, want);
      undo = async () => { fs.truncateSync(file, had); await Loop.setCapacity(node); };
    }
    try {
      if (size !== undefined) await Loop.setCapacity(node);
      const s = bytesToSectors(await Block.size(node));
      await apply(sectors(max !== undefined ? Math.min(s, max) : s));
    } catch (e) {
      await undo().catch(() => undefined);
      throw e;
    }
  }

  // Load first, then suspend/resume: suspending a pool before loading has deadlocked under memory pressure.
  // `length` changes the pool's size; without it the table's current length is kept.
  private async reload(params: ThinPoolParams, length?: Sectors): Promise<void> {
    length ??= (await this.dm.table(this.name))[0].length;
    await this.dm.load(this.name, [line(thinPool, 0, length, params)]);
    try {
      await this.dm.suspend(this.name);
    } catch (e) {
      await this.dm.clear(this.name).catch(() => undefined);
      throw e;
    }
    await this.dm.resume(this.name);
    Object.assign(this.params, thinPool.parse(thinPool.format(params)));
  }

  // ---- volumes ---------------------------------------------------------------------------------------

  /** A new thin volume of `size` bytes (a multiple of 512; '1G' works too). Not activated. */
  async createVolume(name: string, size: Bytes | number | string): Promise<ThinVolume> {
    checkName(name, 'volume name');
    const sz = bytesToSectors(toBytes(size));
    if (sz === 0) throw dmError('ERR_DM_INVALID_SIZE', 'a volume needs a size above 0', name);
    const rec = await this.lock.run(async () => {
      const [tid, recovered] = await Promise.all([this.transactionId(), this.checkNameFree(name)]);
      return this.createId('create', name, sz, null, recovered ? await this.transactionId() : tid, (id) => `create_thin ${id}`);
    });
    return new ThinVolume(this, rec);
  }

  /**
   * A snapshot of `origin` named `name`. An active origin is suspended for the create_snap message and
   * resumed whatever happens: suspend, create_snap and resume go in one native call, after the registry's
   * write, so the origin's I/O waits for the kernel's work alone.
   */
  async snapshot(origin: string | ThinVolume, name: string): Promise<ThinVolume> {
    const originName = typeof origin === 'string' ? origin : origin.name;
    checkName(name, 'snapshot name');
    const rec = await this.lock.run(async () => {
      this.registry.refresh();
      const from = this.registry.get(originName);
      if (!from) throw dmError('ERR_DM_NO_SUCH_VOLUME', `origin '${originName}' is not a volume of pool ${this.name}`, originName);
      const [tidRead, recovered, active] = await Promise.all([this.transactionId(), this.checkNameFree(name), this.isActiveThin(originName, from.id)]);
      const tid = recovered ? await this.transactionId() : tidRead;
      const message = (id: number) => `create_snap ${id} ${from.id}`;
      if (!active) return this.createId('snapshot', name, from.size, from.name, tid, message);
      let resumeFailed = false;
      return this.createId('snapshot', name, from.size, from.name, tid, message, async (text) => {
        try {
          await this.dm.batch().suspend(originName).message(this.name, 0, text).resume(originName).run();
        } catch (e) {
          const ran = (e as DevmapperError).completed ?? 0;
          if (ran === 1) await this.dm.resume(originName);  // create_snap failed: resume, then report its error
          if (ran < 2) throw e;  // create_snap did not run
          resumeFailed = true;  // it ran; the resume failed: tried again after the message step
        }
      }, async () => { if (resumeFailed) await this.dm.resume(originName); });
    });
    return new ThinVolume(this, rec);
  }

  /** A volume by name, or undefined. */
  volume(name: string): ThinVolume | undefined {
    const rec = this.registry.get(name);
    return rec && new ThinVolume(this, rec);
  }

  /** All volumes, with whether each is active now. */
  async list(): Promise<VolumeListEntry[]> {
    const active = new Set((await this.dm.list({ uuids: false })).map((d) => d.name));
    return this.registry.list().map((r) => ({ ...r, active: active.has(r.name) }));
  }

  /** The layer tree, one line per volume, children indented under their parent. */
  async tree(describe: (v: VolumeListEntry) => string = (v) => `${v.name} (id ${v.id})`): Promise<string> {
    const all = await this.list();
    const names = new Set(all.map((v) => v.name));
    const kids = new Map<string | null, VolumeListEntry[]>();
    for (const v of all) {
      const p = v.parent && names.has(v.parent) ? v.parent : null;
      kids.set(p, [...(kids.get(p) ?? []), v]);
    }
    const out: string[] = [];
    const walk = (p: string | null, indent: string) => {
      for (const v of (kids.get(p) ?? []).sort((a, b) => a.created - b.created || a.id - b.id)) {
        out.push(`${indent}${describe(v)}`);
        walk(v.name, indent + '  ');
      }
    };
    walk(null, '');
    return out.join('\n');
  }

  /**
   * Deletes a volume's thin device, which must be inactive. With `deactivate`, it deactivates the volume
   * first (ThinVolume.delete() does), while it reads the transaction id and records the intent: the REMOVE
   * waits in the kernel, the registry work need not wait for it.
   */
  async deleteVolume(name: string, o: { deactivate?: DeactivateOptions } = {}): Promise<void> {
    await this.lock.run(async () => {
      const removing = o.deactivate && ThinVolume.removeWithRetry(this.dm, name, o.deactivate);
      removing?.catch(() => undefined);  // awaited below; this only keeps it from counting as unhandled
      let change: PendingChange;
      let undo!: RegistryWrite;
      try {
        this.registry.refresh();
        change = await this.intendChange(await this.transactionId(), (tid) => {
          const rec = this.registry.get(name);
          if (!rec) throw dmError('ERR_DM_NO_SUCH_VOLUME', `no volume '${name}' in pool ${this.name}`, name);
          // If nothing reaches the pool: the record back, its id taken again, its children under it again.
          undo = { put: [rec, ...this.registry.children(name)], takeIds: [rec.id], pending: null };
          return { op: 'delete', id: rec.id, name, size: rec.size, parent: rec.parent, fromTid: tid, toTid: tid + 1 };
        }, (id) => ({ remove: [name], freeIds: [id] }));  // its children keep their data
      } catch (e) {
        await removing?.catch(() => undefined);
        throw e;
      }
      try {
        await removing;
      } catch (e) {
        this.registry.commit(undo);  // still active: nothing was sent to the pool
        throw e;
      }
      this.step('intent', change);
      try {
        await this.deleteThin(change.id, name);
      } catch (e) {
        this.registry.commit(undo);  // nothing changed in the pool
        throw e;
      }
      this.step('message', change);
      await this.commitDelete(change);
    });
  }

  /** Resizes (grows) a volume: records the size, and reloads its table if it is active. */
  async resizeVolume(name: string, size: Bytes | number | string): Promise<VolumeRecord> {
    const sz = bytesToSectors(toBytes(size));
    return this.lock.run(async () => {
      const rec = this.registry.get(name);
      if (!rec) throw dmError('ERR_DM_NO_SUCH_VOLUME', `no volume '${name}' in pool ${this.name}`, name);
      if (sz < rec.size) throw dmError('ERR_DM_INVALID_SIZE', `thin volumes only grow here (${rec.size} -> ${sz} sectors)`, name);
      if (await this.isActiveThin(name, rec.id)) {
        await this.dm.load(name, [ThinVolume.table(this, rec.id, sz)]);
        await this.dm.suspend(name);
        await this.dm.resume(name);
      }
      const next = { ...rec, size: sz };
      this.registry.commit({ put: [next] });
      return next;
    });
  }

  /**
   * Deactivates every volume, removes the pool (its own loop devices, autoclear, detach with it), and closes
   * the registry. With deleteFiles, also removes the backing files it created and the registry.
   */
  async destroy(o: { deleteFiles?: boolean } = {}): Promise<void> {
    const users = (await this.dm.list({ uuids: false })).map((d) => d.name).filter((n) => n !== this.name);
    for (const n of users) {
      const deps = await this.dm.deps(n).catch(() => []);
      if (deps.some((d) => d.major === this.dev.major && d.minor === this.dev.minor)) await ThinVolume.removeWithRetry(this.dm, n, {});
    }
    await ThinVolume.removeWithRetry(this.dm, this.name, {});  // our loops are autoclear: they go with the pool
    await this.close();
    if (o.deleteFiles) {
      for (const f of [this.files.data, this.files.metadata]) if (f) fs.rmSync(f, { force: true });
      if (this.registryDir) fs.rmSync(this.registryDir, { recursive: true, force: true });
    }
  }

  /** Closes the registry (and the DeviceMapper, if the pool made its own). */
  async close(): Promise<void> {
    await this.lock.run(async () => this.clearCommitted());
    if (this.ownsDm) this.dm.close();
    await this.registry.close();
  }

  // The last change this process committed stays recorded as pending until the next change replaces it (one
  // registry write fewer per change); on close it is cleared, if no other process has replaced it since.
  private clearCommitted(): void {
    const c = this.committed;
    this.committed = undefined;
    if (!c) return;
    this.registry.refresh();
    if (sameChange(this.registry.pending(), c)) this.registry.commit({ pending: null });
  }

  // ---- the change protocol -------------------------------------------------------------------------

  private step(step: Step, change: PendingChange): void {
    this.hooks.step?.(step, change);
  }

  // A name recorded by a change a crashed process left is free again once that change is rolled back: then
  // it recovers first, and says so (the pool's transaction id may have moved).
  private async checkNameFree(name: string): Promise<boolean> {
    this.registry.refresh();
    let taken = this.registry.get(name) !== undefined;
    const recover = taken && this.registry.pending()?.name === name;
    if (recover) {
      await this.recover();
      taken = this.registry.get(name) !== undefined;
    }
    if (taken) throw dmError('ERR_DM_VOLUME_EXISTS', `pool ${this.name} has a volume of that name`, name);
    if (name === this.name || await this.dm.exists(name)) throw dmError('ERR_DM_VOLUME_EXISTS', 'a dm device of that name exists', name);
    return recover;
  }

  /**
   * Allocates an id and records the volume, sends the message, commits: steps 1-3 of the protocol. `tid` is
   * the pool's transaction id read under the lock; a change a crashed process left is finished first.
   * `send` sends the message (by default alone) and throws only if it did not run; `afterMessage` follows
   * the message step.
   */
  private async createId(op: 'create' | 'snapshot', name: string, size: Sectors, parent: string | null, tid: number,
    message: (id: number) => string, send = (text: string) => this.poolMessage(text),
    afterMessage?: () => Promise<void>): Promise<VolumeRecord> {
    for (;;) {
      let rec!: VolumeRecord;
      const change = await this.intendChange(tid, (t, afterFinish) => {
        // A finished change may have been a create of this very name.
        if (afterFinish && this.registry.get(name)) throw dmError('ERR_DM_VOLUME_EXISTS', `pool ${this.name} has a volume of that name`, name);
        return { op, name, size, parent, fromTid: t, toTid: t + 1 };
      }, (id) => {
        rec = { name, id, size, parent, state: 'ready', created: Date.now() };
        return { put: [rec] };
      });
      const id = change.id;
      tid = change.fromTid;
      this.step('intent', change);
      try {
        await send(message(id));  // throws only if the message did not run
      } catch (e) {
        if ((e as DevmapperError).code === 'EEXIST') {
          // The pool has this id though the registry thought it free: keep it taken, use the next one.
          this.registry.commit({ pending: null, remove: [name] });
          continue;
        }
        this.registry.commit({ pending: null, remove: [name], freeIds: [id] });  // a failed message changed nothing
        throw e;
      }
      this.step('message', change);
      await afterMessage?.();
      try {
        await this.setTransactionId(change);
      } catch (e) {
        await this.rollBackCreate(change).catch(() => undefined);  // if this fails too, recover() finishes it later
        throw e;
      }
      this.step('commit', change);
      this.committed = change;  // left pending: the next intend() replaces it, close() clears it
      return rec;
    }
  }

  private async poolMessage(text: string): Promise<void> {
    await this.dm.message(this.name, 0, text);
  }

  // The commit point of every change.
  private setTransactionId(change: PendingChange): Promise<void> {
    return this.poolMessage(`set_transaction_id ${change.fromTid} ${change.toTid}`);
  }

  /**
   * Step 1: records the change `build` makes from the pool's transaction id, with its `effect` on the records.
   * A change another process left unfinished is finished first; the transaction id may then have moved, so
   * the change is built again.
   */
  private async intendChange(tid: number, build: (tid: number, afterFinish: boolean) => IntendedChange,
    effect: (id: number) => RegistryWrite): Promise<PendingChange> {
    for (let afterFinish = false; ; afterFinish = true) {
      const r = this.registry.intend(build(tid, afterFinish), this.committed, effect);
      if ('recorded' in r) return r.recorded;
      tid = await this.finish(r.unfinished, tid);
    }
  }

  private async rollBackCreate(change: PendingChange): Promise<void> {
    await this.deleteThin(change.id, change.name);
    const rec = this.registry.get(change.name);
    this.registry.commit({ remove: rec?.id === change.id ? [change.name] : [], freeIds: [change.id], pending: null });
  }

  // Step 3 of a delete: its records were updated with its intent.
  private async commitDelete(change: PendingChange): Promise<void> {
    await this.setTransactionId(change);
    this.step('commit', change);
    this.committed = change;
  }

  /**
   * Completes or rolls back a change a crashed process left behind, and clears it. Runs under the lock, on
   * open and when a name is held by a pending change; every change also meets one through intend().
   */
  private async recover(): Promise<void> {
    this.registry.refresh();
    const p = this.registry.pending();
    if (!p) return;
    await this.finish(p, await this.transactionId());
    this.clearCommitted();
  }

  /** Finishes the unfinished change `p`, given the pool's transaction id; returns the transaction id after. */
  private async finish(p: PendingChange, tid: number): Promise<number> {
    if (tid === p.toTid) {
      // Committed in the pool; the records were updated with the intent.
      this.registry.commit({ pending: null });
      return tid;
    }
    if (tid === p.fromTid) {
      if (p.op === 'delete') {
        // The user asked for the delete: finish it (deactivating first: the intent may predate the REMOVE).
        if (await this.isActiveThin(p.name, p.id)) await ThinVolume.removeWithRetry(this.dm, p.name, {});
        await this.deleteThin(p.id, p.name);
        await this.commitDelete(p);
        return p.toTid;
      }
      await this.rollBackCreate(p);
      return tid;
    }
    throw dmError('ERR_DM_POOL_STATE',
      `the pool's transaction id is ${tid}, but the registry's unfinished ${p.op} of '${p.name}' expects ${p.fromTid} or ${p.toTid}; was the pool changed by another tool?`, this.name);
  }

  /**
   * `delete <id>`. ENODATA (no such thin) counts as done: never created, or deleted before a crash. EBUSY while
   * no device of this volume is active means its last device is still closing (a deferred remove runs in a
   * kernel workqueue, and the name goes before the table): retried, bounded.
   */
  private async deleteThin(id: number, name: string): Promise<void> {
    await retryWhileBusy(async () => {
      try {
        await this.poolMessage(`delete ${id}`);
      } catch (e) {
        if ((e as DevmapperError).code !== 'ENODATA') throw e;
      }
    }, { retries: 50, delayMs: 20, lasting: () => this.isActiveThin(name, id) });
  }

  /** Whether a dm device of this name is active with a thin table for this pool and id. */
  async isActiveThin(name: string, id: number): Promise<boolean> {
    const info = await this.dm.infoIfExists(name);
    if (!info?.liveTable) return false;
    const [t] = await this.dm.table(name);
    return t?.type === 'thin' && t.params.split(' ')[0] === this.devSpec && Number(t.params.split(' ')[1]) === id;
  }
}
