// Child process of the crash tests. Modes:
//   storm <pool> <seed> <journal> [ops]   random operations on the pool (promise and sync forms, chosen by
//                                         the seed) until killed; prints "ready" once open. With `ops`: that
//                                         many, on this worker's own volumes only, then exit 0
//   aimed <pool> <point> <journal>        one operation that SIGKILLs this process at a chosen point
//   create|attach|destroy <point> <json>  ThinPool.create/attach/destroy killed at a chosen point
// Every volume this process fills with its pattern is journaled (after fsync), so the parent knows which
// volumes must read back what: `written <name>`, and `snap <name> <origin>` before each snapshot.
import fs from 'node:fs';
import { DeviceMapper, DeviceMapperOptions, ThinPool, ThinVolume } from '../../lib';
import { Journal, PATTERN_BYTES, pattern, rng } from './crash-helpers';

const die = (): never => { process.kill(process.pid, 'SIGKILL'); throw new Error('unreachable'); };

/**
 * A DeviceMapper that SIGKILLs its process at one point inside a multi-step call: between the commands of
 * createDevice (after 'create' or 'load'), of a batch (after its Nth command), or right after a plain
 * command ('load', 'suspend', 'remove'). The kill is real; only its moment is chosen.
 */
class KillingDm extends DeviceMapper {
  constructor(private readonly point: string, o: DeviceMapperOptions = {}) { super(o); }
  private hit(p: string): void { if (this.point === p) die(); }

  override async createDevice(name: string, targets: Parameters<DeviceMapper['createDevice']>[1], o: Parameters<DeviceMapper['createDevice']>[2] = {}) {
    return this.createDeviceSync(name, targets, o);
  }
  override createDeviceSync(name: string, targets: Parameters<DeviceMapper['createDevice']>[1], o: Parameters<DeviceMapper['createDevice']>[2] = {}) {
    // createDevice's options, split as createDevice splits them: CREATE takes uuid, minor, readOnly; LOAD readOnly, secure.
    const { secure, ...create } = o ?? {};
    this.createSync(name, create);
    this.hit('createDevice:create');
    super.loadSync(name, targets, { readOnly: create.readOnly, secure });
    this.hit('createDevice:load');
    const info = super.resumeSync(name);
    this.hit('createDevice:resume');
    return info;
  }
  override loadSync(...a: Parameters<DeviceMapper['loadSync']>) { const r = super.loadSync(...a); this.hit('load'); return r; }
  override async load(...a: Parameters<DeviceMapper['load']>) { const r = await super.load(...a); this.hit('load'); return r; }
  override suspendSync(...a: Parameters<DeviceMapper['suspendSync']>) { const r = super.suspendSync(...a); this.hit('suspend'); return r; }
  override async suspend(...a: Parameters<DeviceMapper['suspend']>) { const r = await super.suspend(...a); this.hit('suspend'); return r; }
  override removeSync(...a: Parameters<DeviceMapper['removeSync']>) { this.hit('before-remove'); const r = super.removeSync(...a); this.hit('remove'); return r; }
  override async remove(...a: Parameters<DeviceMapper['remove']>) { this.hit('before-remove'); const r = await super.remove(...a); this.hit('remove'); return r; }
  // A batch's commands one by one, with the kill after the chosen one ('batch:1' = after the first).
  override batch() {
    const calls: [string, unknown[]][] = [];
    const self = this;
    const b: Record<string, unknown> = {
      get length() { return calls.length; },
      runSync() {
        return calls.map(([m, args], i) => {
          const r = (DeviceMapper.prototype as unknown as Record<string, (...x: unknown[]) => unknown>)[`${m}Sync`].apply(self, args);
          self.hit(`batch:${i + 1}`);
          return r;
        });
      },
      async run() { return (b.runSync as () => unknown)(); },
    };
    for (const m of ['create', 'remove', 'rename', 'suspend', 'resume', 'info', 'load', 'clear', 'deps', 'status', 'table', 'message'])
      b[m] = (...args: unknown[]) => { calls.push([m, args]); return b; };
    return b as unknown as ReturnType<DeviceMapper['batch']>;
  }
}

function writePattern(v: ThinVolume, base: string): void {
  const fd = fs.openSync(v.path, 'r+');
  try { fs.writeSync(fd, pattern(base), 0, PATTERN_BYTES, 0); fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

// ---- storm ------------------------------------------------------------------------------------------------

// With `own`, only this worker's volumes are used (several workers on one pool at once), and the pool is
// not grown (two growths computed from one size would race).
async function storm(poolName: string, seed: number, journalFile: string, maxOps: number, own: boolean): Promise<void> {
  const random = rng(seed);
  const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(random() * xs.length)];
  const journal = new Journal(journalFile);
  const sync = () => random() < 0.5;
  const pool = sync() ? ThinPool.openSync(poolName) : await ThinPool.open(poolName);
  console.log('ready');
  let n = 0;
  const mine = new Set<string>();  // what this worker made and did not delete (checked in `own` mode)
  for (let i = 0; i < maxOps; i++) {
    const vols = pool.listSync().filter((v) => !own || v.name.startsWith(`s${seed}-`));
    const known = vols.filter((v) => journal.root(v.name) !== undefined);
    // Crowded: delete more often, so that the pool's population (and the check after each kill) stays bounded.
    const r = vols.length > 24 && random() < 0.5 ? 0.7 : random();
    const name = `s${seed}-${n++}`;
    if (vols.length < 3 || r < 0.2) {
      const v = sync() ? pool.createVolumeSync(name, `${4 + Math.floor(random() * 8)}M`) : await pool.createVolume(name, `${4 + Math.floor(random() * 8)}M`);
      if (sync()) v.activateSync(); else await v.activate();
      mine.add(v.name);
      writePattern(v, v.name);
      journal.written(v.name);
      if (random() < 0.5) { if (sync()) v.deactivateSync(); else await v.deactivate(); }
    } else if (r < 0.4 && known.length) {
      const origin = pick(known)!;
      journal.snap(name, origin.name);
      if (sync()) pool.snapshotSync(origin.name, name); else await pool.snapshot(origin.name, name);
      mine.add(name);
    } else if (r < 0.55) {
      const v = pick(vols.filter((x) => !x.active));
      if (v) { const vol = pool.volume(v.name)!; if (sync()) vol.activateSync(); else await vol.activate(); }
    } else if (r < 0.65) {
      const v = pick(vols.filter((x) => x.active));
      if (v) { const vol = pool.volume(v.name)!; if (sync()) vol.deactivateSync(); else await vol.deactivate(); }
    } else if (r < 0.82 && vols.length > 4) {
      const vol = pool.volume(pick(vols)!.name)!;
      const discard = random() < 0.5;
      if (sync()) vol.deleteSync({ discard }); else await vol.delete({ discard });
      mine.delete(vol.name);
    } else if (r < 0.95) {
      const vol = pool.volume(pick(vols)!.name)!;
      const size = (vol.size + 2048) * 512;
      if (sync()) vol.resizeSync(size); else await vol.resize(size);
    } else if (!own) {
      const data = fs.statSync(pool.files.data!).size;
      if (data < 1024 * 2 ** 20) { if (sync()) pool.growDataSync(data + 16 * 2 ** 20); else await pool.growData(data + 16 * 2 ** 20); }
    }
  }
  await pool.close();
  console.log(`volumes ${JSON.stringify([...mine].sort())}`);
}

// ---- aimed kills ------------------------------------------------------------------------------------------

async function aimed(poolName: string, point: string, journalFile: string): Promise<void> {
  const journal = new Journal(journalFile);
  const [what, at] = point.split('@');
  // '-nonode': a DeviceMapper that makes and removes no /dev/mapper nodes, so the kill leaves them as a kill
  // between an ioctl and its node step would.
  if (what === 'deactivate-nonode') await (await ThinPool.open(poolName)).volume(journal.names()[0])!.activate();
  const pool = await ThinPool.open(poolName, { dm: new KillingDm(at, what.endsWith('-nonode') ? { nodes: 'none' } : {}) });
  const base = journal.names().find((n) => pool.volume(n) && journal.root(n) !== undefined)!;
  switch (what) {
    case 'snapshot-active': {  // the origin is active: suspend, create_snap, resume in one batch
      await pool.volume(base)!.activate();
      journal.snap('aimed-snap', base);
      await pool.snapshot(base, 'aimed-snap');
      break;
    }
    case 'activate':
    case 'activate-nonode':
      await pool.volume(base)!.activate();
      break;
    case 'deactivate-nonode':
      await pool.volume(base)!.deactivate();
      break;
    case 'delete-discard':
      await pool.volume(base)!.delete({ discard: true });
      break;
    case 'resize': {
      const v = pool.volume(base)!;
      await v.activate();
      await v.resize((v.size + 2048) * 512);
      break;
    }
    case 'grow':  // the pool's own table: load, suspend, resume
      await pool.growData(fs.statSync(pool.files.data!).size + 64 * 2 ** 20);
      break;
    default:
      throw new Error(`unknown aimed op ${what}`);
  }
  console.log('not killed');
  process.exit(3);
}

// ---- pool lifecycle kills ---------------------------------------------------------------------------------

async function lifecycle(what: string, point: string, json: string): Promise<void> {
  const o = JSON.parse(json);
  const onFs = point.startsWith('fs:');
  if (onFs) {
    // 'fs:<method>:<n>': killed right after the nth call of fs.<method> (a file made, sized or removed).
    const [, method, nth] = point.split(':');
    const fsm = fs as unknown as Record<string, (...x: unknown[]) => unknown>;
    const real = fsm[method];
    let left = Number(nth);
    fsm[method] = (...x: unknown[]) => { const r = real(...x); if (--left === 0) die(); return r; };
  }
  const dm = onFs ? undefined : new KillingDm(point);
  console.log('ready');
  if (what === 'create') await ThinPool.create({ ...o, dm });
  else if (what === 'attach') await ThinPool.attach({ ...o, dm });
  else {
    const pool = await ThinPool.open(o.name, { dm });
    await pool.destroy({ deleteFiles: !!o.deleteFiles });
  }
  console.log('not killed');
  process.exit(3);
}

async function main(): Promise<void> {
  const [mode, ...a] = process.argv.slice(2);
  if (mode === 'storm') await storm(a[0], Number(a[1]), a[2], Number(a[3] ?? 100_000), a[3] !== undefined);
  else if (mode === 'aimed') await aimed(a[0], a[1], a[2]);
  else await lifecycle(mode, a[0], a[1]);
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
