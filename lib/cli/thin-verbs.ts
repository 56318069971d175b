// The thin verbs: `pool ...`, `vol ...` and `registry dump`, on the ThinPool API. Each prints stable JSON
// with --json and a short human form otherwise.
import { ThinPool, VolumeListEntry } from '../thin/pool';
import type { ThinPoolOptions } from '../thin/provisioning';
import { dmError } from '../core/errors';
import { Io, Options, Parsed, UsageError, arity, flag, integerArg, json, parse, str } from './common';

export interface ThinVerb { usage: string; summary: string; options: Options; run(p: Parsed, io: Io): void }

const common: Options = { json: { type: 'boolean' }, 'registry-dir': { type: 'string' } };
const poolOptions = (p: Parsed): ThinPoolOptions => ({ registryDir: str(p, 'registry-dir') });

/** Opens the pool, runs fn, closes the pool (whatever fn did). */
function withPool<T>(p: Parsed, name: string, fn: (pool: ThinPool) => T, o: ThinPoolOptions = {}): T {
  const pool = ThinPool.openSync(name, { ...poolOptions(p), ...o });
  try { return fn(pool); } finally { pool.closeSync(); }
}

function out(p: Parsed, io: Io, value: unknown, human: () => string): void {
  io.out(flag(p, 'json') ? json(value) : human());
}

const volumeLine = (v: VolumeListEntry) =>
  `${v.name}\tid ${v.id}\t${v.size} sectors\t${v.active ? 'active' : 'inactive'}${v.parent ? `\tsnapshot of ${v.parent}` : ''}\n`;

const sizeOf = (verb: string, text: string): string | number => (/^\d+$/.test(text) ? Number(text) : text);

export const poolVerbs: Record<string, ThinVerb> = {
  create: {
    usage: 'pool create <pool> (--data-file <f> --data-size <size> [--metadata-file <f>] [--metadata-size <size>] | --data-device <dev> --metadata-device <dev>) [--block-size <sectors>] [--registry-dir <dir>] [--json]',
    summary: 'create a thin pool on files (sparse, on loop devices) or on block devices',
    options: { ...common, 'data-file': { type: 'string' }, 'metadata-file': { type: 'string' }, 'data-size': { type: 'string' }, 'metadata-size': { type: 'string' },
      'data-device': { type: 'string' }, 'metadata-device': { type: 'string' }, 'block-size': { type: 'string' } },
    run(p, io) {
      arity('pool create', p, 1, 1, 'pool name');
      const blockSize = str(p, 'block-size');
      const pool = ThinPool.createSync({ name: p.positionals[0], ...poolOptions(p), dataFile: str(p, 'data-file'), metadataFile: str(p, 'metadata-file'),
        dataSize: str(p, 'data-size'), metadataSize: str(p, 'metadata-size'), dataDevice: str(p, 'data-device'), metadataDevice: str(p, 'metadata-device'),
        blockSize: blockSize === undefined ? undefined : integerArg('pool create', blockSize, '--block-size') });
      try { out(p, io, { pool: pool.name }, () => `created pool ${pool.name}\n`); } finally { pool.closeSync(); }
    },
  },
  attach: {
    usage: 'pool attach <pool> (--data-file <f> [--metadata-file <f>] | --data-device <dev> --metadata-device <dev>) [--registry-dir <dir>] [--json]',
    summary: 'activate an existing pool from its files or devices',
    options: { ...common, 'data-file': { type: 'string' }, 'metadata-file': { type: 'string' }, 'data-device': { type: 'string' }, 'metadata-device': { type: 'string' } },
    run(p, io) {
      arity('pool attach', p, 1, 1, 'pool name');
      const pool = ThinPool.attachSync({ name: p.positionals[0], ...poolOptions(p), dataFile: str(p, 'data-file'), metadataFile: str(p, 'metadata-file'),
        dataDevice: str(p, 'data-device'), metadataDevice: str(p, 'metadata-device') });
      try { out(p, io, { pool: pool.name }, () => `attached pool ${pool.name}\n`); } finally { pool.closeSync(); }
    },
  },
  status: {
    usage: 'pool status <pool> [--registry-dir <dir>] [--json]',
    summary: 'the pool\'s kernel status: mode, used and total blocks',
    options: common,
    run(p, io) {
      arity('pool status', p, 1, 1, 'pool name');
      const s = withPool(p, p.positionals[0], (pool) => pool.statusSync());
      out(p, io, s, () => Object.entries(s).map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}\n`).join(''));
    },
  },
  ls: {
    usage: 'pool ls <pool> [--registry-dir <dir>] [--json]',
    summary: 'the pool\'s volumes: name, thin id, size, active or not, origin',
    options: common,
    run(p, io) {
      arity('pool ls', p, 1, 1, 'pool name');
      const list = withPool(p, p.positionals[0], (pool) => pool.listSync());
      out(p, io, list, () => list.map(volumeLine).join(''));
    },
  },
  tree: {
    usage: 'pool tree <pool> [--registry-dir <dir>] [--json]',
    summary: 'the volumes as a tree of snapshots',
    options: common,
    run(p, io) {
      arity('pool tree', p, 1, 1, 'pool name');
      const [tree, list] = withPool(p, p.positionals[0], (pool) => [pool.treeSync(), pool.listSync()] as const);
      out(p, io, list.map((v) => ({ name: v.name, id: v.id, parent: v.parent })), () => (tree.endsWith('\n') || !tree ? tree : tree + '\n'));
    },
  },
  usage: {
    usage: 'pool usage <pool> [--registry-dir <dir>] [--json]',
    summary: 'mapped, exclusive and shared blocks of each thin device, from the pool\'s metadata',
    options: common,
    run(p, io) {
      arity('pool usage', p, 1, 1, 'pool name');
      const u = withPool(p, p.positionals[0], (pool) => pool.usageSync());
      out(p, io, u, () => `transaction ${u.transactionId}, block ${u.dataBlockSize} sectors\n` +
        u.devices.map((d) => `${d.name ?? `(id ${d.id})`}\tmapped ${d.mappedBytes}\texclusive ${d.exclusiveBytes}\tshared ${d.sharedBytes}\n`).join(''));
    },
  },
  check: {
    usage: 'pool check <pool> [--registry-dir <dir>] [--json]',
    summary: 'compare the registry with the pool\'s metadata and live devices (exit 1 when they differ)',
    options: common,
    run(p, io) {
      arity('pool check', p, 1, 1, 'pool name');
      const c = withPool(p, p.positionals[0], (pool) => pool.checkSync(), { check: false });
      out(p, io, c, () => Object.entries(c).map(([k, v]) => `${k}: ${JSON.stringify(v)}\n`).join(''));
      if (c.unfinished || c.lost.length || c.orphans.length || c.needsCheck) process.exitCode = 1;
    },
  },
  destroy: {
    usage: 'pool destroy <pool> [--delete-files] [--registry-dir <dir>] [--json]',
    summary: 'deactivate the pool (with --delete-files also remove the files and registry create made)',
    options: { ...common, 'delete-files': { type: 'boolean' } },
    run(p, io) {
      arity('pool destroy', p, 1, 1, 'pool name');
      const pool = ThinPool.openSync(p.positionals[0], poolOptions(p));
      // destroy() ends the pool; close only if it threw before that.
      try { pool.destroySync({ deleteFiles: flag(p, 'delete-files') }); } catch (e) { pool.closeSync(); throw e; }
      out(p, io, { pool: p.positionals[0], destroyed: true }, () => `destroyed pool ${p.positionals[0]}\n`);
    },
  },
};

export const volVerbs: Record<string, ThinVerb> = {
  create: {
    usage: 'vol create <pool> <volume> <size> [--registry-dir <dir>] [--json]',
    summary: 'create a thin volume (size in bytes or like 1G); `vol activate` makes its device',
    options: common,
    run(p, io) {
      arity('vol create', p, 3, 3, 'pool, volume and size');
      const [poolName, name, size] = p.positionals;
      const rec = withPool(p, poolName, (pool) => { const v = pool.createVolumeSync(name, sizeOf('vol create', size)); return pool.registry.get(v.name); });
      out(p, io, rec, () => `created ${name} (id ${rec?.id})\n`);
    },
  },
  snap: {
    usage: 'vol snap <pool> <origin> <snapshot> [--registry-dir <dir>] [--json]',
    summary: 'snapshot a volume (inactive until `vol activate`)',
    options: common,
    run(p, io) {
      arity('vol snap', p, 3, 3, 'pool, origin and snapshot name');
      const [poolName, origin, name] = p.positionals;
      const rec = withPool(p, poolName, (pool) => { const v = pool.snapshotSync(origin, name); return pool.registry.get(v.name); });
      out(p, io, rec, () => `created ${name} (id ${rec?.id}), a snapshot of ${origin}\n`);
    },
  },
  activate: {
    usage: 'vol activate <pool> <volume> [-r|--readonly] [--registry-dir <dir>] [--json]',
    summary: 'activate a volume (make its dm device)',
    options: { ...common, readonly: { type: 'boolean', short: 'r' } },
    run(p, io) {
      arity('vol activate', p, 2, 2, 'pool and volume');
      const [poolName, name] = p.positionals;
      withPool(p, poolName, (pool) => volume(pool, name).activateSync({ readOnly: flag(p, 'readonly') }));
      out(p, io, { volume: name, active: true }, () => `activated ${name}\n`);
    },
  },
  deactivate: {
    usage: 'vol deactivate <pool> <volume> [--registry-dir <dir>] [--json]',
    summary: 'deactivate a volume (remove its dm device; the data stays)',
    options: common,
    run(p, io) {
      arity('vol deactivate', p, 2, 2, 'pool and volume');
      const [poolName, name] = p.positionals;
      withPool(p, poolName, (pool) => volume(pool, name).deactivateSync());
      out(p, io, { volume: name, active: false }, () => `deactivated ${name}\n`);
    },
  },
  rm: {
    usage: 'vol rm <pool> <volume> [--registry-dir <dir>] [--json]',
    summary: 'delete a volume and its data',
    options: common,
    run(p, io) {
      arity('vol rm', p, 2, 2, 'pool and volume');
      const [poolName, name] = p.positionals;
      withPool(p, poolName, (pool) => pool.deleteVolumeSync(name));
      out(p, io, { volume: name, deleted: true }, () => `deleted ${name}\n`);
    },
  },
  resize: {
    usage: 'vol resize <pool> <volume> <size> [--registry-dir <dir>] [--json]',
    summary: 'resize a volume (size in bytes or like 2G)',
    options: common,
    run(p, io) {
      arity('vol resize', p, 3, 3, 'pool, volume and size');
      const [poolName, name, size] = p.positionals;
      const rec = withPool(p, poolName, (pool) => pool.resizeVolumeSync(name, sizeOf('vol resize', size)));
      out(p, io, rec, () => `resized ${name} to ${rec.size} sectors\n`);
    },
  },
  usage: {
    usage: 'vol usage <pool> <volume> [--registry-dir <dir>] [--json]',
    summary: 'the blocks a volume maps, exclusively and shared',
    options: common,
    run(p, io) {
      arity('vol usage', p, 2, 2, 'pool and volume');
      const [poolName, name] = p.positionals;
      const u = withPool(p, poolName, (pool) => volume(pool, name).usageSync());
      out(p, io, u, () => Object.entries(u).map(([k, v]) => `${k}: ${JSON.stringify(v)}\n`).join(''));
    },
  },
};

export const registryVerbs: Record<string, ThinVerb> = {
  dump: {
    usage: 'registry dump <pool> [--registry-dir <dir>]',
    summary: 'the pool\'s registry as JSON: volumes, the pending change, the next free id, a held metadata snapshot, the minimum free space',
    options: common,
    run(p, io) {
      arity('registry dump', p, 1, 1, 'pool name');
      const dump = withPool(p, p.positionals[0], (pool) => ({
        pool: pool.name,
        volumes: pool.registry.list(),
        pending: pool.registry.pending() ?? null,
        nextFreeId: pool.registry.nextFreeId(),
        metadataSnapshot: pool.registry.metadataSnapshot() ?? null,
        minFreeSpace: pool.minFreeSpace ?? null,
      }), { check: false });
      io.out(json(dump));
    },
  },
};

function volume(pool: ThinPool, name: string) {
  const v = pool.volume(name);
  if (!v) throw dmError('ERR_DM_NO_SUCH_VOLUME', `no volume ${JSON.stringify(name)} in pool ${pool.name}`, name);
  return v;
}

export { parse, UsageError };
