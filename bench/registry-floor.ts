// What any durable registry costs here (issue 3's "< 10 % over the low-level path"): the ThinPool lifecycle
// with its LMDB registry, and with a bench-only journal store that does the least a durable store can (records
// in memory, one appended line + fdatasync per write), each against the low-level path with the same
// set_transaction_id commits on its own pool, interleaved in one run. The journal is a yardstick, not a store
// the library offers: it has no recovery of its own and keeps everything in memory. Last, the same with the
// LMDB registry through the sync twins, against the low-level sync calls.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ThinPool } from '../lib';
import { IntendedChange, MetadataSnapshotHold, PendingChange, RegistryStore, RegistryWrite, VolumeRecord, sameChange } from '../lib/thin/registry';
import { lowLevel, lowLevelSync, viaPool, viaPoolSync } from './thin-paths';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 20), PER = Number(process.env.BENCH_PER ?? 4);
const now = () => Number(process.hrtime.bigint()) / 1e6;

class JournalStore implements RegistryStore {
  private readonly vols = new Map<string, VolumeRecord>();
  private readonly free = new Set<number>();
  private next = 0;
  private pend?: PendingChange;
  private readonly fd: number;

  constructor(file: string) { this.fd = fs.openSync(file, 'a'); }

  // The one durable write per change.
  private log(entry: unknown): void {
    fs.writeSync(this.fd, JSON.stringify(entry) + '\n');
    fs.fdatasyncSync(this.fd);
  }

  get(name: string) { return this.vols.get(name); }
  list() { return [...this.vols.values()]; }
  children(name: string) { return this.list().filter((v) => v.parent === name); }
  count() { return this.vols.size; }
  pending() { return this.pend; }
  nextFreeId() { return this.free.size ? Math.min(...this.free) : this.next; }

  private take(id: number): void {
    this.free.delete(id);
    for (let gap = this.next; gap < id; gap++) this.free.add(gap);
    if (id >= this.next) this.next = id + 1;
  }

  commit(w: RegistryWrite): void {
    this.apply(w);
    this.log(w);
  }

  private apply(w: RegistryWrite): void {
    for (const id of w.takeIds ?? []) this.take(id);
    for (const id of w.freeIds ?? []) if (id < this.next) this.free.add(id);
    for (const name of w.remove ?? []) {
      const gone = this.vols.get(name);
      for (const child of this.children(name)) this.vols.set(child.name, { ...child, parent: gone?.parent ?? null });
      this.vols.delete(name);
    }
    for (const rec of w.put ?? []) this.vols.set(rec.name, rec);
    if (w.pending !== undefined) this.pend = w.pending ?? undefined;
  }

  intend(change: IntendedChange, committed?: PendingChange, effect?: (id: number) => RegistryWrite) {
    const unfinished = this.pend;
    if (unfinished && unfinished.toTid !== change.fromTid && !sameChange(unfinished, committed)) return { unfinished };
    const id = change.id ?? this.nextFreeId();
    if (change.id === undefined) this.take(id);
    this.pend = { ...change, id };
    const w = { ...effect?.(id), pending: this.pend };
    this.apply(w);
    this.log(w);
    return { recorded: this.pend };
  }

  refresh(): void {}
  private hold?: MetadataSnapshotHold;
  metadataSnapshot() { return this.hold; }
  setMetadataSnapshot(h: MetadataSnapshotHold | null) { this.hold = h ?? undefined; this.log({ metasnap: h }); }
  close(): void { fs.closeSync(this.fd); }
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-floor-'));
  fs.mkdirSync(path.join(dir, 'b-lock'));  // the pool's lock file lives in its registryDir
  const lmdbPool = await ThinPool.create({ name: 'rf-lmdb', dataFile: path.join(dir, 'a-data'), dataSize: '8G', metadataSize: '256M', skipBlockZeroing: true });
  const journalPool = await ThinPool.create({ name: 'rf-journal', dataFile: path.join(dir, 'b-data'), dataSize: '8G', metadataSize: '256M',
    skipBlockZeroing: true, registryDir: path.join(dir, 'b-lock'), registry: new JournalStore(path.join(dir, 'b-journal')) });
  try {
    const paths: [string, () => Promise<void>][] = [
      ['low-level + commits (pool A)', lowLevel(lmdbPool, true)], ['ThinPool, LMDB registry (pool A)', viaPool(lmdbPool)],
      ['low-level + commits (pool B)', lowLevel(journalPool, true)], ['ThinPool, bench-only journal (pool B)', viaPool(journalPool)],
      ['low-level sync calls + commits (pool A)', lowLevelSync(lmdbPool, true)], ['ThinPool sync twins, LMDB registry (pool A)', viaPoolSync(lmdbPool)],
    ];
    for (let i = 0; i < 5; i++) for (const [, fn] of paths) await fn();
    const total = paths.map(() => 0);
    for (let r = 0; r < ROUNDS; r++) {
      for (let k = 0; k < paths.length; k++) {
        const j = (r + k) % paths.length;
        const t0 = now();
        for (let i = 0; i < PER; i++) await paths[j][1]();
        total[j] += now() - t0;
      }
    }
    const ms = total.map((t) => t / (ROUNDS * PER));
    console.log('| path | ms per lifecycle | over the low-level path on its pool |');
    console.log('|---|---|---|');
    const over = (j: number) => { const d = (ms[j] / ms[j - 1] - 1) * 100; return `${d >= 0 ? '+' : ''}${d.toFixed(0)}%`; };
    paths.forEach(([name], j) => console.log(`| ${name} | ${ms[j].toFixed(1)} | ${j % 2 ? over(j) : ''} |`));
  } finally {
    await lmdbPool.destroy({ deleteFiles: true });
    await journalPool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
