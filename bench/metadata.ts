// Metadata reader benchmark: pool.metadata(), usage() and diff() (the in-process reader, native/thin_metadata.cc)
// against thin_dump, thin_ls and thin_delta run as subprocesses on the same held metadata snapshot (-m), on one
// pool at 1,000 and then at 10,000 thin ids; and the event loop's lag while promise usage() calls walk the larger
// pool, against its lag while idle. Run by bench/run.sh.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DeviceMapper, DiffRange, Loop, PoolMetadata, PoolUsage, ThinPool, ThinVolume, mapperPath, sectors } from '../lib';
import { joined, metadataNode } from '../test/integration/metadata-oracle';

/** Thin ids in the pool at each measuring point, ascending: the pool grows from one to the next. */
const ID_COUNTS = (process.env.BENCH_IDS ?? '1000,10000').split(',').map(Number);
/** Interleaved rounds per measuring point, and how often the cheaper rows (metadata, diff) run in each. */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CHEAP_RUNS = Number(process.env.BENCH_CHEAP_RUNS ?? 3);
/** The size of the diffed pair: a fully written base and a snapshot of it with every tenth block rewritten. */
const PAIR_MIB = Number(process.env.BENCH_PAIR_MIB ?? 1024);
/** The volume the bulk snapshots are taken of, in data blocks, and how many snapshots share each of its versions. */
const SEED_BLOCKS = Number(process.env.BENCH_SEED_BLOCKS ?? 256);
const GROUP = Number(process.env.BENCH_GROUP ?? 10);
/** Snapshots made through pool.snapshot() (named, in the registry) before the bulk, to show what that path costs. */
const NAMED_SNAPSHOTS = Number(process.env.BENCH_NAMED_SNAPSHOTS ?? 20);
/** The event loop's lag is sampled over promise usage() calls, one after another: at least 3, for at least this long. */
const LAG_SECONDS = Number(process.env.BENCH_LAG_SECONDS ?? 5);

const BLOCK = 64 * 1024;  // the pool's data block size (the default, 128 sectors)
// The bulk ids sit far above the registry's, which counts up from 0: the two never meet.
const FIRST_BULK_ID = 1_000_000;

const now = () => Number(process.hrtime.bigint()) / 1e6;
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One timed path: a tool run as a subprocess, or a library call. */
interface Timed { name: string; run: () => unknown; ms: number[] }
const timed = (name: string, run: () => unknown): Timed => ({ name, run, ms: [] });

/** A row of the table: a library form against the tool that computes the same. */
interface Row { lib: Timed; tool: Timed }
// Each sample's tool time over its library time, then the median: the two ran moments apart, so a host whose
// load drifts over minutes moves both sides of a ratio alike.
const ratio = (r: Row) => median(r.tool.ms.map((t, i) => t / r.lib.ms[i]));

// What the blocks hold does not matter (the pool's data goes to a zero target): writing them maps them.
function writeBlocks(device: string, blocks: Iterable<number>): void {
  const fd = fs.openSync(device, 'r+');
  try {
    const buf = Buffer.alloc(BLOCK, 1);
    for (const b of blocks) fs.writeSync(fd, buf, 0, BLOCK, b * BLOCK);
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

async function collect(it: AsyncIterable<DiffRange>): Promise<DiffRange[]> {
  const out: DiffRange[] = [];
  for await (const r of it) out.push(r);
  return out;
}

const plainRanges = (rs: DiffRange[]) => rs.map(({ kind, begin, length }) => ({ kind, begin, length }));
const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

async function main() {
  const started = now();
  const toolsVersion = execFileSync('thin_ls', ['-V'], { encoding: 'utf8' }).trim();  // fails early without the tools
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'metadata-bench-'));
  const pairBlocks = (PAIR_MIB * 2 ** 20) / BLOCK;
  // The data the volumes write, with room for the seed's rewrites. It goes to a zero target: the bench reads
  // metadata only, and the guest's memory could not hold a tmpfs file of that size.
  const dataBlocks = Math.ceil(pairBlocks * 1.1) + SEED_BLOCKS + Math.ceil(ID_COUNTS[ID_COUNTS.length - 1] / GROUP) + 4096;
  const dm = new DeviceMapper();
  const dataName = 'mdb-data', metaFile = path.join(dir, 'meta');
  dm.createDeviceSync(dataName, [{ start: sectors(0), length: sectors((dataBlocks * BLOCK) / 512), type: 'zero', params: '' }]);
  fs.writeFileSync(metaFile, '');
  fs.truncateSync(metaFile, 64 * 2 ** 20);
  const metaLoop = Loop.attachSync(metaFile);
  let made: ThinPool | undefined;
  let held = false;  // the bench's own reserve of the metadata snapshot, released whatever happens
  try {
    const pool = made = await ThinPool.create({ name: 'mdb-pool', dataDevice: mapperPath(dataName), metadataDevice: metaLoop.path, registryDir: path.join(dir, 'registry'), skipBlockZeroing: true });
    const reserve = async () => { await pool.dm.message(pool.name, 0, 'reserve_metadata_snap'); held = true; };
    const release = async () => { await pool.dm.message(pool.name, 0, 'release_metadata_snap'); held = false; };
    const dev = metadataNode(pool);

    // The diffed pair: a base written in full (O_DIRECT: no page cache of the volume in the guest's small
    // memory), and a snapshot of it with every tenth block rewritten.
    let t0 = now();
    const base = await (await pool.createVolume('mdb-base', PAIR_MIB * 2 ** 20)).activate();
    execFileSync('dd', ['if=/dev/zero', `of=${base.path}`, 'bs=1M', `count=${PAIR_MIB}`, 'oflag=direct', 'status=none']);
    const baseMs = now() - t0;
    t0 = now();
    const pair = await (await pool.snapshot(base, 'mdb-pair')).activate();
    const rewritten = Array.from({ length: Math.ceil(pairBlocks / 10) }, (_, i) => i * 10);
    writeBlocks(pair.path, rewritten);
    await pair.deactivate();
    await base.deactivate();
    const pairMs = now() - t0;

    // The seed the bulk snapshots are taken of, written in full and kept active: one of its blocks is
    // rewritten before each group of snapshots, so groups have trees of their own that share all but a path.
    const seed = await (await pool.createVolume('mdb-seed', SEED_BLOCKS * BLOCK)).activate();
    writeBlocks(seed.path, Array.from({ length: SEED_BLOCKS }, (_, i) => i));
    let seedVersion = 0;
    const rewriteSeed = () => writeBlocks(seed.path, [(seedVersion++ * 37) % SEED_BLOCKS]);

    // A few named snapshots through the library (suspend, create_snap, resume, registry commit each).
    const named: ThinVolume[] = [];
    t0 = now();
    for (let i = 0; i < NAMED_SNAPSHOTS; i++) {
      rewriteSeed();
      named.push(await pool.snapshot(seed, `mdb-snap-${i}`));
    }
    const namedMs = NAMED_SNAPSHOTS ? (now() - t0) / NAMED_SNAPSHOTS : 0;

    // The bulk: raw create_snap messages, a group at a time under one suspend of the (active) seed. The pool's
    // metadata is what the bench reads; the registry only names ids, so these ids have no record.
    let nextBulkId = FIRST_BULK_ID, bulkMade = 0, bulkMs = 0;
    const idCount = () => 3 + named.length + (nextBulkId - FIRST_BULK_ID);
    const grow = (target: number) => {
      const t = now();
      while (idCount() < target) {
        rewriteSeed();
        pool.dm.suspendSync(seed.name);
        try {
          for (let k = 0; k < GROUP && idCount() < target; k++) {
            pool.dm.messageSync(pool.name, 0, `create_snap ${nextBulkId} ${seed.id}`);
            nextBulkId++;
            bulkMade++;
          }
        } finally {
          pool.dm.resumeSync(seed.name);
        }
      }
      bulkMs += now() - t;
    };

    console.log(`pool: ${PAIR_MIB} MiB base written in ${(baseMs / 1000).toFixed(1)} s; its snapshot with ${rewritten.length} blocks rewritten in ${(pairMs / 1000).toFixed(1)} s`);
    if (NAMED_SNAPSHOTS) console.log(`pool.snapshot() of the active seed, with a seed block rewritten before each: ${namedMs.toFixed(1)} ms per snapshot (${NAMED_SNAPSHOTS} made)`);

    const results: { ids: number; rows: Row[] }[] = [];
    for (const target of ID_COUNTS) {
      grow(target);
      console.log(`\n${idCount()} thin ids (bulk: create_snap messages, ${GROUP} under each suspend of the seed: ${(bulkMs / bulkMade).toFixed(1)} ms per snapshot over ${bulkMade})`);
      const rows = await measure(pool, dev, base, pair, reserve, release);
      results.push({ ids: idCount(), rows });
      console.log(`${ROUNDS} interleaved rounds (usage: ${ROUNDS} samples a row, the others ${ROUNDS * CHEAP_RUNS}): median ms (spread), and the median of the samples' ratios:`);
      console.log('| library | ms | tool (subprocess) | ms | tool / library |');
      console.log('|---|---|---|---|---|');
      const ms = (t: Timed) => `${median(t.ms).toFixed(1)} (${Math.min(...t.ms).toFixed(0)}–${Math.max(...t.ms).toFixed(0)})`;
      for (const r of rows)
        console.log(`| ${r.lib.name} | ${ms(r.lib)} | ${r.tool.name} | ${ms(r.tool)} | ${ratio(r).toFixed(2)}× |`);
    }

    // Event-loop lag on the largest pool: a 1 ms timer's delay while promise usage() calls (each reserving,
    // walking and releasing) run one after another, against its delay while idle for as long. Busy and idle
    // spans alternate, so both meet the same host.
    const busy = monitorEventLoopDelay({ resolution: 1 }), idle = monitorEventLoopDelay({ resolution: 1 });
    let walkMs = 0, walks = 0;
    for (; walks < 3 || walkMs < LAG_SECONDS * 1000; walks++) {
      const t = now();
      busy.enable();
      await pool.usage();
      busy.disable();
      const ms = now() - t;
      walkMs += ms;
      idle.enable();
      await sleep(ms);
      idle.disable();
    }

    console.log('\n| tool / library | ' + results.map((r) => `${r.ids} ids`).join(' | ') + ' |');
    console.log('|---|' + results.map(() => '---|').join(''));
    for (let i = 0; i < results[0].rows.length; i++) {
      const r0 = results[0].rows[i];
      console.log(`| ${r0.lib.name} vs \`${r0.tool.name}\` | ` + results.map(({ rows }) => `${ratio(rows[i]).toFixed(2)}×`).join(' | ') + ' |');
    }
    const lag = (h: typeof busy) => `p99 ${(h.percentile(99) / 1e6).toFixed(1)} ms, max ${(h.max / 1e6).toFixed(1)} ms (${h.count} samples)`;
    console.log(`\nevent-loop lag at ${results[results.length - 1].ids} ids: during ${walks} promise usage() calls (${(walkMs / walks).toFixed(0)} ms each) ${lag(busy)}; idle for as long: ${lag(idle)}`);
    const md = await pool.metadata();
    console.log(`metadata: ${md.devices.length} thin devices, transaction ${md.transactionId}, ${md.metadataBlocksUsed}/${md.metadataBlocks} metadata blocks, ${md.dataBlocksUsed}/${md.dataBlocks} data blocks used`);
    console.log(`kernel: ${os.release()}; thin-provisioning-tools ${toolsVersion}`);
    console.log(`bench: ${((now() - started) / 1000).toFixed(0)} s, of which ${(bulkMs / 1000).toFixed(0)} s making the bulk snapshots`);
    await seed.deactivate();
  } finally {
    try {
      if (held) await made?.dm.message(made.name, 0, 'release_metadata_snap').catch((e) => console.error(e));
      await made?.destroy({ deleteFiles: true });
    } finally {
      dm.removeSync(dataName);
      dm.close();
      Loop.detachSync(metaLoop.path);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
}

/**
 * The rows at the pool's current size. For each tool: a metadata snapshot reserved by the bench (as another tool
 * would) while the tool and the library's { snapshot: 'held' } forms, promise and sync, read it; then, released,
 * the library's default promise form, which reserves and releases a snapshot of its own per call.
 */
async function measure(pool: ThinPool, dev: string, base: ThinVolume, pair: ThinVolume,
  reserve: () => Promise<void>, release: () => Promise<void>): Promise<Row[]> {
  const HELD = { snapshot: 'held' } as const;
  // The tools' output is collected, as a caller would need it, but parsed outside the timing.
  const tool = (...args: string[]) => () => execFileSync(args[0], args.slice(1), { encoding: 'utf8', maxBuffer: 1 << 30 });
  // --skip-mappings: the superblock and the devices, what metadata() returns. Without it thin_dump prints
  // every mapping of every device, work metadata() does not do.
  const dump = timed('thin_dump -m --skip-mappings', tool('thin_dump', '-m', '--skip-mappings', dev));
  const ls = timed('thin_ls -m', tool('thin_ls', '-m', '--no-headers', '-o', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS', dev));
  const delta = timed('thin_delta -m', tool('thin_delta', '-m', '--thin1', String(base.id), '--thin2', String(pair.id), dev));
  const metadata = timed('metadata()', () => pool.metadata(HELD));
  const usage = timed('usage()', () => pool.usage(HELD));
  const diff = timed('diff()', () => collect(pool.diff(base, pair, HELD)));
  // A tool, the library's forms that read the tool's view, and its default form; usage is the slow one (a
  // full walk on both sides), so the others are run more often in a round.
  const groups = [
    { tool: dump, held: [metadata, timed('metadataSync()', () => pool.metadataSync(HELD))], own: timed('metadata(), own snapshot', () => pool.metadata()), runs: CHEAP_RUNS },
    { tool: ls, held: [usage, timed('usageSync()', () => pool.usageSync(HELD))], own: timed('usage(), own snapshot', () => pool.usage()), runs: 1 },
    { tool: delta, held: [diff, timed('diffSync()', () => pool.diffSync(base, pair, HELD))], own: timed('diff(), own snapshot', () => collect(pool.diff(base, pair))), runs: CHEAP_RUNS },
  ];

  // Once, untimed (and a warm-up): the library and the tools give the same answers on this view.
  await reserve();
  try {
    const md = (await metadata.run()) as PoolMetadata, dumped = parseDump(dump.run() as string);
    const devices = md.devices.map(({ id, mappedBlocks, transactionId, creationTime, snapshottedTime }) => ({ id, mappedBlocks, transactionId, creationTime, snapshottedTime }));
    if (!same(devices, dumped.devices) || md.transactionId !== dumped.transactionId || md.time !== dumped.time) throw new Error('metadata() differs from thin_dump -m');
    const used = ((await usage.run()) as PoolUsage).devices.map(({ id, mapped, exclusive, shared }) => ({ id, mapped, exclusive, shared }));
    if (!same(used, parseLs(ls.run() as string))) throw new Error('usage() differs from thin_ls -m');
    const ranges = plainRanges((await diff.run()) as DiffRange[]);
    if (!same(ranges, parseDelta(delta.run() as string)) || !same(plainRanges(pool.diffSync(base, pair, HELD)), ranges)) throw new Error('diff() differs from thin_delta -m');
    const u = (id: number) => used.find((d) => d.id === id)!;
    console.log(`the library's answers equal the tools': ${md.devices.length} devices; ${ranges.length} differing ranges in the pair; base ${u(base.id).exclusive} and pair ${u(pair.id).exclusive} exclusive blocks`);
  } finally {
    await release();
  }

  // A group runs as a unit, its tool and library forms one after another, so each sample of a row pairs
  // a tool run and a library run moments apart. The order rotates within a group and between groups.
  const run = async (t: Timed) => { const t0 = now(); await t.run(); t.ms.push(now() - t0); };
  for (let r = 0; r < ROUNDS; r++) {
    for (let g = 0; g < groups.length; g++) {
      const { tool: t, held: forms, own, runs } = groups[(r + g) % groups.length];
      for (let k = 0; k < runs; k++) {
        const order = [t, ...forms];
        await reserve();
        try {
          for (let i = 0; i < order.length; i++) await run(order[(r + k + i) % order.length]);
        } finally {
          await release();
        }
        await run(own);
      }
    }
  }
  return groups.flatMap(({ tool: t, held: forms, own }) => [...forms, own].map((lib) => ({ lib, tool: t })));
}

// The tools' output, parsed as test/integration/metadata-oracle.ts does (which runs the tools itself).
const attrs = (text: string): Record<string, string> =>
  Object.fromEntries([...text.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));

function parseDump(xml: string) {
  const sb = attrs(/<superblock([^>]*)>/.exec(xml)![1]);
  const devices = [...xml.matchAll(/<device([^>]*)>/g)].map((m) => {
    const a = attrs(m[1]);
    return { id: +a.dev_id, mappedBlocks: +a.mapped_blocks, transactionId: +a.transaction, creationTime: +a.creation_time, snapshottedTime: +a.snap_time };
  });
  return { transactionId: +sb.transaction, time: +sb.time, devices };
}

function parseLs(text: string) {
  return text.trim().split('\n').filter(Boolean).map((l) => {
    const [id, mapped, exclusive, shared] = l.trim().split(/\s+/).map(Number);
    return { id, mapped, exclusive, shared };
  }).sort((a, b) => a.id - b.id);
}

const KIND: Record<string, string> = { left_only: 'leftOnly', right_only: 'rightOnly', different: 'different' };
function parseDelta(xml: string) {
  return joined([...xml.matchAll(/<(left_only|right_only|different)([^>]*)\/>/g)].map((m) => {
    const x = attrs(m[2]);
    return { kind: KIND[m[1]], begin: +x.begin, length: +x.length };
  }));
}

main().catch((e) => { console.error(e); process.exit(1); });
