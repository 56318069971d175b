// What the crash tests share: a seeded generator, the pattern each written volume holds, the journal that
// says which volumes hold what, the worker's launcher, and the check run after every kill.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Block, DeviceMapper, ThinPool, mapperPath } from '../../lib';

/** mulberry32: small, seeded, good enough to spread kills and pick operations. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const PATTERN_BYTES = 64 * 1024;

/** What a base volume named `base` is filled with (and its snapshots read). */
export function pattern(base: string): Buffer {
  const unit = crypto.createHash('sha256').update(base).digest();
  const buf = Buffer.alloc(PATTERN_BYTES);
  for (let o = 0; o < PATTERN_BYTES; o += unit.length) unit.copy(buf, o);
  return buf;
}

/**
 * Which volumes hold a known pattern: `written <name>` once a base volume's pattern is on disk (after
 * fsync), `snap <name> <origin>` before a snapshot of a volume whose content is known. Appended by workers,
 * read by everyone; a line cut short by a kill is ignored.
 */
export class Journal {
  constructor(readonly file: string) {}
  private lines(): string[][] {
    try {
      return fs.readFileSync(this.file, 'utf8').split('\n').filter((l) => l.endsWith(';')).map((l) => l.slice(0, -1).split(' '));
    } catch {
      return [];
    }
  }
  written(name: string): void { fs.appendFileSync(this.file, `written ${name};\n`); }
  snap(name: string, origin: string): void { fs.appendFileSync(this.file, `snap ${name} ${origin};\n`); }
  names(): string[] { return this.lines().map((l) => l[1]); }
  /** The base volume whose pattern `name` holds, or undefined when unknown. */
  root(name: string): string | undefined {
    const map = new Map<string, string>();
    for (const l of this.lines()) {
      if (l[0] === 'written') map.set(l[1], l[1]);
      else if (l[0] === 'snap' && map.has(l[2])) map.set(l[1], map.get(l[2])!);
    }
    return map.get(name);
  }
}

export const workerPath = path.join(__dirname, 'crash-worker.js');

/** Starts a worker; `ready` resolves when it prints "ready" (or exits first). */
export function startWorker(args: string[]): { child: ChildProcess; ready: Promise<void>; exit: Promise<number | string | null>; output(): string } {
  const child = spawn(process.execPath, [workerPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const ready = new Promise<void>((resolve) => {
    child.stdout!.on('data', (d: Buffer) => { out += d; if (out.includes('ready')) resolve(); });
    child.once('exit', () => resolve());
  });
  child.stderr!.on('data', (d: Buffer) => { err += d; });
  const exit = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => {
    if (code !== 0 && code !== null && err) process.stderr.write(`worker ${args.join(' ')}: ${err}\n`);
    resolve(signal ?? code);
  }));
  return { child, ready, exit, output: () => out };
}

/** Runs a worker that is expected to kill itself; resolves with how it ended ('SIGKILL' when it did). */
export async function runWorker(args: string[]): Promise<number | string | null> {
  return startWorker(args).exit;
}

/** The thin ids the pool's metadata holds, read by thin_dump under a metadata snapshot (the oracle). */
export async function thinIdsFromMetadata(pool: ThinPool): Promise<number[]> {
  const meta = `/dev/${path.basename(fs.readlinkSync(`/sys/dev/block/${pool.params.metadataDev}`))}`;
  await pool.dm.message(pool.name, 0, 'reserve_metadata_snap');
  try {
    const xml = execFileSync('thin_dump', ['-m', meta], { encoding: 'utf8', maxBuffer: 64 << 20 });
    return [...xml.matchAll(/<device dev_id="(\d+)"/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
  } finally {
    await pool.dm.message(pool.name, 0, 'release_metadata_snap');
  }
}

/**
 * After a kill: opens the pool (which must succeed) and lists what is wrong: the registry's ids against the
 * pool's (thin_dump), a pending change, devices of the pool suspended, table-less, with an inactive table or
 * sized unlike their record, and volumes whose known pattern does not read back. Leaves every volume as
 * active or inactive as it found it. Returns the opened pool too.
 */
export async function checkAfterKill(poolName: string, journal: Journal): Promise<{ problems: string[]; pool: ThinPool }> {
  const problems: string[] = [];
  const pool = await ThinPool.open(poolName);
  try {
    if (pool.registry.pending()) problems.push(`pending change left: ${JSON.stringify(pool.registry.pending())}`);
    // The library's own check, run by open(), must find nothing, and must agree with the oracles below.
    if (!pool.drift) problems.push(`open() could not check the pool: ${pool.driftError?.message}`);
    else if (!pool.drift.clean) problems.push(`check() at open found drift: ${JSON.stringify(pool.drift)}`);
    if (!(await pool.check()).clean) problems.push('check() after open found drift');
    const records = pool.registry.list();
    const ids = records.map((r) => r.id).sort((a, b) => a - b);
    if (new Set(ids).size !== ids.length) problems.push(`two records share an id: ${ids.join(',')}`);
    const inPool = await thinIdsFromMetadata(pool);
    if (inPool.join(',') !== ids.join(',')) problems.push(`thin ids: pool [${inPool.join(',')}], registry [${ids.join(',')}]`);
    const byName = new Map(records.map((r) => [r.name, r]));
    const prefix = `DEVMAPPER-THIN-${pool.name}-`;
    for (const d of await pool.dm.list({ uuids: true })) {
      if (!d.uuid?.startsWith(prefix)) continue;
      const info = await pool.dm.info(d.name);
      if (!info.liveTable) { problems.push(`${d.name}: no live table`); continue; }
      if (info.suspended) problems.push(`${d.name}: suspended`);
      if (info.inactiveTable) problems.push(`${d.name}: inactive table loaded`);
      const node = await Block.deviceNumber(mapperPath(d.name)).catch(() => undefined);
      if (node?.major !== info.dev.major || node?.minor !== info.dev.minor) problems.push(`${d.name}: /dev/mapper node missing or wrong`);
      const rec = byName.get(d.name);
      const [t] = await pool.dm.table(d.name);
      if (!rec) problems.push(`${d.name}: active, but no record`);
      else if (t.length !== rec.size) problems.push(`${d.name}: live table ${t.length} sectors, record ${rec.size}`);
    }
    const live = new Set((await pool.dm.list()).map((d) => d.name));
    for (const rec of records) if (!live.has(rec.name) && fs.existsSync(mapperPath(rec.name))) problems.push(`${rec.name}: a /dev/mapper node with no device`);
    for (const rec of records) {
      const root = journal.root(rec.name);
      if (root === undefined) continue;
      const v = pool.volume(rec.name)!;
      const wasActive = await v.isActive();
      if (!wasActive) await v.activate();
      try {
        const fd = fs.openSync(v.path, 'r');
        const buf = Buffer.alloc(PATTERN_BYTES);
        try { fs.readSync(fd, buf, 0, PATTERN_BYTES, 0); } finally { fs.closeSync(fd); }
        if (!buf.equals(pattern(root))) problems.push(`${rec.name}: does not read back ${root}'s pattern`);
      } catch (e) {
        problems.push(`${rec.name}: cannot be read: ${(e as Error).message}`);
      } finally {
        if (!wasActive) await v.deactivate();
      }
    }
    return { problems, pool };
  } catch (e) {
    await pool.close();
    throw e;
  }
}

/** Every dm device and loop device whose name or backing file mentions `tag`: what a kill may leave. */
export function leftovers(dm: DeviceMapper, tag: string): string[] {
  const devs = dm.listSync().map((d) => d.name).filter((n) => n.includes(tag));
  const loops = fs.readdirSync('/sys/block').filter((e) => /^loop\d+$/.test(e)).filter((e) => {
    try { return fs.readFileSync(`/sys/block/${e}/loop/backing_file`, 'utf8').includes(tag); } catch { return false; }
  });
  return [...devs, ...loops];
}
