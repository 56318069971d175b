// Differential test of the devmapper command against dmsetup (Debian 12: lvm2 2.03.16) on the same devices:
// stdout byte for byte and the exit status, for each read verb on each kind of device and on all devices;
// then each changing verb done by one tool and read back by the other, both ways.
//
// Known differences, asserted here rather than skipped (see README, "Command line"):
// - `version`: dmsetup's first line is libdevmapper's version; ours names devmapper. Only "Driver version"
//   is compared.
// - stderr: the messages differ (ours are `devmapper: <message>`); only stdout and the exit status are compared.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { DeviceMapper } from '../../lib';
import { main } from '../../lib/cli/main';
import { hasDmsetup, removeQuietly, scratchLoop, uniqueName, zeroMetadata } from './helpers';

// A spawned step (dmsetup, or node for the command) takes seconds under TCG: a bound, not a timing assertion.
jest.setTimeout(1_800_000);

const dm = new DeviceMapper();
afterAll(() => dm.close());
const maybe = hasDmsetup() ? test : test.skip;

const CLI = path.join(__dirname, '../../bin/devmapper.js');
interface Run { stdout: string; status: number | null; stderr: string }
/** The command as installed: node running bin/devmapper.js. */
const cliProcess = (args: string[], input?: string): Run => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', input });
/**
 * The command's main() in this process, with stdout, stderr and stdin of its own: what bin/devmapper.js runs,
 * without a node start per call (seconds under TCG). The installed command itself is tested apart.
 */
function cli(args: string[], input?: string): Run {
  let stdout = '', stderr = '';
  const saved = process.exitCode;
  process.exitCode = undefined;
  try {
    const status = main(args, { out: (t) => { stdout += t; }, err: (t) => { stderr += t; }, readStdin: () => input ?? '' });
    return { stdout, stderr, status };
  } finally {
    process.exitCode = saved;
  }
}
const dmsetup = (args: string[], input?: string): Run =>
  spawnSync('dmsetup', args, { encoding: 'utf8', input, env: { ...process.env, DM_DISABLE_UDEV: '1' } });
const tools = { cli, dmsetup };

/** Both tools give the same stdout and the same exit status for `args`. */
function same(args: string[]): Run {
  const ours = cli(args);
  const theirs = dmsetup(args);
  expect({ args, stdout: ours.stdout, status: ours.status }).toEqual({ args, stdout: theirs.stdout, status: theirs.status });
  return ours;
}

function ok(r: Run): Run {
  expect({ stderr: r.stderr, status: r.status }).toEqual({ stderr: r.stderr, status: 0 });
  return r;
}

maybe('read verbs print what dmsetup prints, device by device and for all devices', () => {
  const data = scratchLoop(64 << 20);
  const meta = scratchLoop(8 << 20);
  zeroMetadata(meta.path);
  const n = {
    linear: uniqueName('clin'), zero: uniqueName('czero'), error: uniqueName('cerr'), ro: uniqueName('cro'),
    pool: uniqueName('cpool'), thin: uniqueName('cthin'), suspended: uniqueName('csusp'), inactive: uniqueName('cinact'),
    notable: uniqueName('cnotable'),
  };
  const all = Object.values(n);
  try {
    ok(dmsetup(['create', n.linear, '--uuid', `CLI-${n.linear}`, '--table', `0 2048 linear 7:${data.number} 0`]));
    ok(dmsetup(['create', n.zero, '--table', '0 4096 zero']));
    ok(dmsetup(['create', n.error, '--table', '0 1024 error\n1024 1024 zero']));
    ok(dmsetup(['create', n.ro, '-r', '--table', `0 1024 linear 7:${data.number} 4096`]));
    ok(dmsetup(['create', n.pool, '--uuid', `CLI-${n.pool}`, '--table', `0 65536 thin-pool 7:${meta.number} 7:${data.number} 128 0 1 skip_block_zeroing`]));
    ok(dmsetup(['message', n.pool, '0', 'create_thin 1']));
    const pool = dm.infoSync(n.pool).dev;
    ok(dmsetup(['create', n.thin, '--table', `0 8192 thin ${pool.major}:${pool.minor} 1`]));
    ok(dmsetup(['create', n.suspended, '--table', `0 512 linear 7:${data.number} 8192`]));
    ok(dmsetup(['suspend', n.suspended]));
    ok(dmsetup(['create', n.inactive, '--table', '0 512 zero']));
    ok(dmsetup(['load', n.inactive, '--table', '0 1024 error']));
    ok(dmsetup(['create', n.notable, '--notable']));

    for (const name of all) {
      same(['info', name]);
      same(['info', '-c', name]);
      same(['table', name]);
      same(['table', '--inactive', name]);
      same(['deps', name]);
      same(['status', name]);
      same(['status', '--noflush', name]);
    }
    // Every device, in the kernel's order, with dmsetup's "name: " prefixes; several named devices likewise.
    for (const verb of ['ls', 'info', 'table', 'deps']) same([verb]);
    same(['info', '-c']);
    same(['status', '--noflush']);
    same(['table', n.linear, n.error, n.notable]);
    same(['deps', n.thin, n.pool]);
    same(['info', n.zero, n.ro]);
    same(['info', '-c', n.zero, n.linear, n.pool]);
    same(['ls', '--target', 'thin-pool']);
    same(['ls', '--target', 'zero']);
    same(['table', '--target', 'zero']);
    same(['targets']);
    // A device that does not exist: both fail with status 1 and print nothing on stdout.
    const missing = same(['info', uniqueName('cmissing')]);
    expect(missing.status).toBe(1);
    expect(same(['table', uniqueName('cmissing')]).status).toBe(1);
    // version: the driver line is the kernel's; the library line differs by design (see above).
    const driver = (r: Run) => r.stdout.split('\n').find((l) => l.startsWith('Driver version:'));
    expect(driver(ok(cli(['version'])))).toBe(driver(ok(dmsetup(['version']))));
    expect(cli(['version']).stdout).toMatch(/^Library version: {3}devmapper \d+\.\d+\.\d+/);
  } finally {
    try { dm.resumeSync(n.suspended); } catch { /* gone or never made */ }
    removeQuietly(dm, n.thin, ...all.filter((x) => x !== n.thin));
    data.detach();
    meta.detach();
  }
});

maybe('ls --tree draws the tree dmsetup draws: stacked devices, a thin-pool on loops, a device with no table', () => {
  const data = scratchLoop(32 << 20);
  const meta = scratchLoop(8 << 20);
  zeroMetadata(meta.path);
  const pool = uniqueName('ctpool'), thin = uniqueName('ctthin'), top = uniqueName('cttop'), lone = uniqueName('ctlone'), empty = uniqueName('ctempty');
  try {
    ok(cli(['create', pool, '--table', `0 32768 thin-pool 7:${meta.number} 7:${data.number} 128 0 1 skip_block_zeroing`]));
    ok(cli(['message', pool, '0', 'create_thin', '1']));
    const p = dm.infoSync(pool).dev;
    ok(cli(['create', thin, '--table', `0 2048 thin ${p.major}:${p.minor} 1`]));
    const t = dm.infoSync(thin).dev;
    ok(cli(['create', top, '--table', `0 1024 linear ${t.major}:${t.minor} 0\n1024 1024 linear 7:${data.number} 0`]));
    ok(cli(['create', lone, '--table', '0 8 zero']));
    ok(cli(['create', empty, '--notable']));
    same(['ls', '--tree']);
    same(['ls']);
  } finally {
    removeQuietly(dm, top, thin, pool, lone, empty);
    data.detach();
    meta.detach();
  }
});

/** The /dev/mapper node of `name` is a block device with the device's number (or absent when dev is undefined). */
function expectNode(name: string, dev: { major: number; minor: number } | undefined): void {
  const p = `/dev/mapper/${name}`;
  if (!dev) { expect(fs.existsSync(p)).toBe(false); return; }
  const st = fs.statSync(p);
  expect(st.isBlockDevice()).toBe(true);
  expect({ major: Math.floor(st.rdev / 256) & 0xfff, minor: (st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00) }).toEqual(dev);
}

for (const [doerName, readerName] of [['cli', 'dmsetup'], ['dmsetup', 'cli']] as const) {
  maybe(`changing verbs done by ${doerName} read back by ${readerName}`, () => {
    const doer = tools[doerName], reader = tools[readerName];
    const data = scratchLoop(16 << 20);
    const meta = scratchLoop(8 << 20);
    zeroMetadata(meta.path);
    const name = uniqueName('cchg'), renamed = uniqueName('cren'), piped = uniqueName('cpipe'), pool = uniqueName('cmpool'), thin = uniqueName('cmthin');
    try {
      ok(doer(['create', name, '--uuid', `CLI-${name}`, '-r', '--table', `0 2048 linear 7:${data.number} 0`]));
      expect(ok(reader(['table', name])).stdout).toBe(`0 2048 linear 7:${data.number} 0\n`);
      expect(ok(reader(['info', '-c', '--noheadings', '-o', 'name,uuid,attr', name])).stdout).toBe(`${name}:CLI-${name}:L--r\n`);
      expectNode(name, dm.infoSync(name).dev);
      same(['info', name]);

      ok(doer(['create', piped], '0 100 zero\n# a comment\n100 100 error\n'));
      expect(ok(reader(['table', piped])).stdout).toBe('0 100 zero \n100 100 error \n');

      ok(doer(['load', name, '--table', '0 4096 zero']));
      expect(ok(reader(['info', '-c', '--noheadings', '-o', 'attr', name])).stdout).toBe('LI-r\n');
      expect(ok(reader(['table', '--inactive', name])).stdout).toBe('0 4096 zero \n');
      ok(doer(['clear', name]));
      expect(ok(reader(['info', '-c', '--noheadings', '-o', 'attr', name])).stdout).toBe('L--r\n');

      ok(doer(['load', name, '--table', '0 4096 zero']));
      ok(doer(['suspend', '--noflush', name]));
      expect(ok(reader(['info', '-c', '--noheadings', '-o', 'attr', name])).stdout).toBe('LIsr\n');
      ok(doer(['resume', name]));
      expect(ok(reader(['info', '-c', '--noheadings', '-o', 'attr', name])).stdout).toBe('L--w\n');
      expect(ok(reader(['table', name])).stdout).toBe('0 4096 zero \n');

      const before = dm.infoSync(name).dev;
      ok(doer(['rename', name, renamed]));
      expect(ok(reader(['info', '-c', '--noheadings', '-o', 'name,major,minor', renamed])).stdout).toBe(`${renamed}:${before.major}:${before.minor}\n`);
      expect(reader(['info', name]).status).toBe(1);
      expectNode(renamed, before);
      expectNode(name, undefined);
      // The kernel sets a uuid once: refused (EINVAL) for a device that has one, by both tools alike.
      expect(doer(['rename', renamed, '--setuuid', `CLI2-${renamed}`]).status).toBe(1);
      ok(doer(['rename', piped, '--setuuid', `CLI2-${piped}`]));
      expect(ok(reader(['info', '-c', '--noheadings', '-o', 'uuid', piped])).stdout).toBe(`CLI2-${piped}\n`);

      // A message to a thin-pool by one tool; a thin device on the id it made, by the other.
      ok(doer(['create', pool, '--table', `0 32768 thin-pool 7:${meta.number} 7:${data.number} 128 0 1 skip_block_zeroing`]));
      ok(doer(['message', pool, '0', 'create_thin', '4']));
      const p = dm.infoSync(pool).dev;
      ok(reader(['create', thin, '--table', `0 2048 thin ${p.major}:${p.minor} 4`]));
      expect(ok(reader(['status', thin])).stdout).toBe('0 2048 thin 0 -\n');
      same(['status', '--noflush', pool]);
      ok(reader(['remove', thin]));
      // A message the target refuses: status 1 from both.
      expect(doer(['message', pool, '0', 'create_thin', '4']).status).toBe(1);

      ok(doer(['remove', renamed, piped]));
      expect(reader(['info', renamed]).status).toBe(1);
      expect(reader(['info', piped]).status).toBe(1);
      expectNode(renamed, undefined);
      ok(doer(['remove', '--force', pool]));
      expect(reader(['info', pool]).status).toBe(1);
    } finally {
      removeQuietly(dm, thin, pool, piped, name, renamed);
      data.detach();
      meta.detach();
    }
  });
}

maybe('mknodes makes a missing /dev/mapper node; wait returns once the event number has passed', () => {
  const name = uniqueName('cnode');
  try {
    ok(cli(['create', name, '--table', '0 64 zero']));
    const dev = dm.infoSync(name).dev;
    fs.rmSync(`/dev/mapper/${name}`);
    ok(cli(['mknodes', name]));
    expectNode(name, dev);
    fs.rmSync(`/dev/mapper/${name}`);
    ok(cli(['mknodes']));
    expectNode(name, dev);
    // DM_DEV_WAIT returns at once when the event number given is not the device's current one.
    const events = dm.infoSync(name).eventNr;
    expect(same(['wait', name, `${events + 1}`]).status).toBe(0);
    expect(same(['wait', uniqueName('cmissing'), '0']).status).toBe(1);
  } finally {
    removeQuietly(dm, name);
  }
});

maybe('errors: exit 1 with `devmapper:` on stderr and the error as JSON with --json; usage errors exit 2', () => {
  const missing = uniqueName('cmissing');
  const r = cli(['info', missing, '--json']);
  expect(r.status).toBe(1);
  expect(r.stderr).toMatch(/^devmapper: /);
  expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'ENXIO', errno: -6, device: missing } });
  expect(cli(['create', missing, '--table', '0 8 nosuchtarget']).status).toBe(1);
  expect(cli(['info', missing]).stdout).toBe('');
  expect(cli(['create']).status).toBe(2);
  expect(dm.infoIfExistsSync(missing)).toBeUndefined();
});

maybe('thin verbs: a pool on files, volumes and a snapshot through the command, with --json', () => {
  const dir = fs.mkdtempSync('/tmp/devmapper-cli-');
  const pool = uniqueName('cthpool'), base = uniqueName('cvbase'), snap = uniqueName('cvsnap');
  const j = (...args: string[]) => JSON.parse(ok(cli([...args, '--json'])).stdout);
  let created = false;
  try {
    expect(j('pool', 'create', pool, '--data-file', `${dir}/data`, '--data-size', '64M')).toEqual({ pool });
    created = true;
    const b = j('vol', 'create', pool, base, '8M');
    expect(b).toMatchObject({ name: base, size: 16384, parent: null });
    expect(j('vol', 'snap', pool, base, snap)).toMatchObject({ name: snap, parent: base });
    expect(j('pool', 'ls', pool).map((v: { name: string; active: boolean }) => [v.name, v.active]).sort()).toEqual([[base, false], [snap, false]].sort());
    expect(j('pool', 'tree', pool)).toEqual(expect.arrayContaining([{ name: base, id: b.id, parent: null }, { name: snap, id: expect.any(Number), parent: base }]));
    expect(ok(cli(['pool', 'tree', pool])).stdout).toContain(snap);
    expect(j('pool', 'status', pool)).toMatchObject({ state: 'ok', mode: 'rw' });
    expect(j('vol', 'activate', pool, snap)).toEqual({ volume: snap, active: true });
    expect(j('vol', 'resize', pool, snap, '16M')).toMatchObject({ name: snap, size: 32768 });
    // The volume's device is there for dmsetup too, at its new size.
    expect(ok(dmsetup(['table', snap])).stdout).toMatch(/^0 32768 thin /);
    expect(j('vol', 'deactivate', pool, snap)).toEqual({ volume: snap, active: false });
    expect(dmsetup(['info', snap]).status).toBe(1);
    expect(j('pool', 'usage', pool).devices.map((d: { name: string }) => d.name).sort()).toEqual([base, snap].sort());
    expect(j('vol', 'usage', pool, base)).toHaveProperty('mappedBytes', 0);
    expect(j('pool', 'check', pool)).toMatchObject({ lost: [], orphans: [], unfinished: null });
    const dump = j('registry', 'dump', pool);
    expect(dump).toMatchObject({ pool, pending: null, minFreeSpace: null });
    expect(dump.volumes.map((v: { name: string }) => v.name).sort()).toEqual([base, snap].sort());
    expect(j('vol', 'rm', pool, snap)).toEqual({ volume: snap, deleted: true });
    // A failure: exit 1, the error as JSON on stdout.
    const gone = cli(['vol', 'rm', pool, snap, '--json']);
    expect(gone.status).toBe(1);
    expect(JSON.parse(gone.stdout).error).toMatchObject({ code: 'ERR_DM_NO_SUCH_VOLUME' });
    expect(j('pool', 'destroy', pool, '--delete-files')).toEqual({ pool, destroyed: true });
    created = false;
  } finally {
    if (created) cli(['pool', 'destroy', pool, '--delete-files']);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

maybe('the installed command (node bin/devmapper.js): output as dmsetup\'s, a table from stdin, exit statuses', () => {
  const name = uniqueName('cbin');
  try {
    ok(cliProcess(['create', name], '0 64 zero\n'));
    for (const args of [['info', name], ['table', name], ['ls', '--target', 'zero']]) {
      const ours = cliProcess(args), theirs = dmsetup(args);
      expect({ args, stdout: ours.stdout, status: ours.status }).toEqual({ args, stdout: theirs.stdout, status: theirs.status });
    }
    expect(cliProcess(['version']).stdout).toMatch(/^Library version: {3}devmapper \d+\.\d+\.\d+/);
    const missing = cliProcess(['info', uniqueName('cmissing'), '--json']);
    expect(missing.status).toBe(1);
    expect(JSON.parse(missing.stdout)).toMatchObject({ error: { code: 'ENXIO' } });
    expect(cliProcess(['nosuchverb']).status).toBe(2);
    ok(cliProcess(['remove', name]));
    expect(dm.infoIfExistsSync(name)).toBeUndefined();
  } finally {
    removeQuietly(dm, name);
  }
});
