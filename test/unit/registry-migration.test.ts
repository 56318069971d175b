// A registry written before the addon moved to upstream LMDB (lmdb-js's format, data version 2:
// test/fixtures/registry-lmdbjs-v2, made by make.js there) is migrated at its first open, once, keeping the old
// file; a migration killed midway is redone; a format neither LMDB knows is refused with a typed error.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LmdbRegistry } from '../../lib';
import { native } from '../../lib/core/binding';
import { bound, childNode } from './emulation';

jest.setTimeout(bound(60_000));

const FIXTURE = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'registry-lmdbjs-v2');
const PAIRS: [string, string][] = JSON.parse(fs.readFileSync(path.join(FIXTURE, 'pairs.json'), 'utf8'));
// Every key prefix registry.ts writes.
const PREFIXES = ['child/', 'free/', 'metasnap', 'next', 'pending', 'vol/'];
const BACKUP = 'registry.mdb.lmdbjs-v2.bak', TEMP = 'registry.mdb.migrating';

const sha = (f: string) => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const FIXTURE_SHA = sha(path.join(FIXTURE, 'registry.mdb'));

function oldRegistry(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-migrate-'));
  fs.copyFileSync(path.join(FIXTURE, 'registry.mdb'), path.join(dir, 'registry.mdb'));
  return dir;
}

// Every key and value, through the store itself.
function pairs(dir: string): [string, string][] {
  const kv = new native.KvStore(path.join(dir, 'registry.mdb'));
  try {
    return PREFIXES.flatMap((p) => kv.range(p));
  } finally {
    kv.close();
  }
}

// The first meta page's magic and version where upstream LMDB 0.9 keeps them (after its 16-byte page header).
function upstreamMeta(file: string): [number, number] {
  const b = Buffer.alloc(24);
  const fd = fs.openSync(file, 'r');
  try { fs.readSync(fd, b, 0, 24, 0); } finally { fs.closeSync(fd); }
  return [b.readUInt32LE(16), b.readUInt32LE(20)];
}

function expectMigrated(dir: string): void {
  const file = path.join(dir, 'registry.mdb');
  expect(upstreamMeta(file)).toEqual([0xBEEFC0DE, 1]);
  expect(sha(path.join(dir, BACKUP))).toBe(FIXTURE_SHA);
  expect(fs.existsSync(path.join(dir, TEMP))).toBe(false);
  expect(pairs(dir)).toEqual(PAIRS);
}

test('an lmdb-js registry is migrated at its first open: every record the same, the old file kept, upstream format', () => {
  const dir = oldRegistry();
  try {
    const r = LmdbRegistry.open(dir);
    try {
      expect(r.list().map((v) => v.name)).toEqual(['base', 'grandchild', 'other', 'snap-b']);
      expect(r.get('snap-b')).toEqual({ name: 'snap-b', id: 2, size: 4194304, parent: 'base', state: 'ready', created: 1764480002000,
        lease: { pid: 4242, pidStart: '123456', ttlMs: 60000, expiresAt: 1764480062000 } });
      expect(r.children('base').map((v) => v.name)).toEqual(['grandchild', 'snap-b']);
      expect(r.pending()).toEqual({ op: 'create', id: 6, name: 'next-vol', size: 1048576, parent: null, fromTid: 7, toTid: 8 });
      expect(r.metadataSnapshot()).toEqual({ pid: 0, start: '0', token: 't1', tid: 7, root: 1234 });
      expect(r.nextFreeId()).toBe(1);
    } finally {
      r.close();
    }
    expectMigrated(dir);

    // A second open finds upstream's format: the file is not replaced again, and writes last.
    const file = path.join(dir, 'registry.mdb');
    const ino = fs.statSync(file).ino, backup = fs.statSync(path.join(dir, BACKUP));
    const again = LmdbRegistry.open(dir);
    try {
      again.commit({ takeIds: [1], put: [{ name: 'after', id: 1, size: 8 as never, parent: null, state: 'ready', created: 1 }] });
    } finally {
      again.close();
    }
    expect(fs.statSync(file).ino).toBe(ino);
    expect(fs.statSync(path.join(dir, BACKUP))).toMatchObject({ ino: backup.ino, mtimeMs: backup.mtimeMs });
    const third = LmdbRegistry.open(dir);
    try {
      expect(third.get('after')?.id).toBe(1);
      expect(third.count()).toBe(5);
    } finally {
      third.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a migration killed before its rename (a leftover temporary folder, a stale backup) is cleaned up and redone', () => {
  const dir = oldRegistry();
  try {
    fs.mkdirSync(path.join(dir, TEMP));
    fs.writeFileSync(path.join(dir, TEMP, 'registry.mdb'), Buffer.alloc(5000, 7));  // half written
    fs.writeFileSync(path.join(dir, BACKUP), 'stale');
    fs.writeFileSync(path.join(dir, 'registry.mdb-lock'), Buffer.alloc(8192));  // the old env's lock file
    LmdbRegistry.open(dir).close();
    expectMigrated(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a migration killed after its rename leaves the new registry, and its folder and the old lock file are removed', () => {
  const dir = oldRegistry();
  try {
    LmdbRegistry.open(dir).close();
    // As the migration was before it removed the old lock file and its folder.
    fs.mkdirSync(path.join(dir, TEMP));
    fs.writeFileSync(path.join(dir, 'registry.mdb-lock'), Buffer.alloc(8192, 0xa5));
    const ino = fs.statSync(path.join(dir, 'registry.mdb')).ino;
    const r = LmdbRegistry.open(dir);
    try {
      expect(r.count()).toBe(4);
    } finally {
      r.close();
    }
    expect(fs.statSync(path.join(dir, 'registry.mdb')).ino).toBe(ino);
    expectMigrated(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('processes opening one old registry at once: one migration, each reads every record', async () => {
  const dir = oldRegistry();
  const lib = path.join(__dirname, '..', '..', 'lib');
  const script = `const r = require(${JSON.stringify(lib)}).LmdbRegistry.open(process.argv[1]);
    process.stdout.write(JSON.stringify(r.list().map((v) => [v.name, v.id]))); r.close();`;
  const child = () => new Promise<string>((resolve, reject) => {
    const p = spawn(...childNode(['-e', script, dir]), { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    p.stdout.on('data', (d) => { out += d; });
    p.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`exited ${code}`))));
  });
  try {
    const outs = await Promise.all([1, 2, 3, 4].map(child));
    for (const out of outs) expect(JSON.parse(out)).toEqual([['base', 0], ['grandchild', 3], ['other', 5], ['snap-b', 2]]);
    expectMigrated(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a data version neither LMDB knows is a typed error, and the file is left as it was', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-migrate-'));
  try {
    const file = path.join(dir, 'registry.mdb');
    const old = fs.readFileSync(path.join(FIXTURE, 'registry.mdb'));
    // lmdb-js's layout, version 3.
    const v3 = Buffer.from(old);
    v3.writeUInt32LE(3, 28);
    fs.writeFileSync(file, v3);
    expect(() => LmdbRegistry.open(dir)).toThrow(expect.objectContaining({ name: 'DevmapperError', code: 'ERR_DM_REGISTRY',
      message: expect.stringContaining("lmdb-js's LMDB data version 3") }));
    expect(fs.readFileSync(file).equals(v3)).toBe(true);
    // Upstream's layout, version 7.
    LmdbRegistry.open(path.join(dir, 'new')).close();
    const up = fs.readFileSync(path.join(dir, 'new', 'registry.mdb'));
    up.writeUInt32LE(7, 20);
    fs.writeFileSync(file, up);
    expect(() => LmdbRegistry.open(dir)).toThrow(expect.objectContaining({ code: 'ERR_DM_REGISTRY', message: expect.stringContaining('LMDB data version 7') }));
    expect(fs.readFileSync(file).equals(up)).toBe(true);
    expect(fs.readdirSync(dir).sort()).toEqual(['new', 'registry.mdb']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// An earlier devmapper with the old registry open holds a shared fcntl lock on byte 0 of its lock file; python
// (no fcntl in Node) stands in for it.
const python = spawnSync('python3', ['-c', 'import fcntl'], { stdio: 'ignore' }).status === 0;
(python ? test : test.skip)('an old registry another process has open (an earlier devmapper) is refused, untouched, and migrated once it is closed', async () => {
  const dir = oldRegistry();
  const lockFile = path.join(dir, 'registry.mdb-lock');
  fs.writeFileSync(lockFile, Buffer.alloc(8192));
  const holder = spawn('python3', ['-c', `import fcntl, sys
f = open(sys.argv[1], 'r+')
fcntl.lockf(f, fcntl.LOCK_SH, 1, 0)
print('held', flush=True)
sys.stdin.read()`, lockFile], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`the lock holder exited ${code}`)));
    });
    expect(() => LmdbRegistry.open(dir)).toThrow(expect.objectContaining({ code: 'ERR_DM_REGISTRY', errno: -os.constants.errno.EBUSY,
      message: expect.stringContaining('has it open') }));
    expect(sha(path.join(dir, 'registry.mdb'))).toBe(FIXTURE_SHA);
    expect(fs.readdirSync(dir).sort()).toEqual(['registry.mdb', 'registry.mdb-lock']);
    const exited = new Promise((resolve) => holder.once('exit', resolve));
    holder.stdin!.end();
    await exited;
    LmdbRegistry.open(dir).close();
    expectMigrated(dir);
  } finally {
    holder.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
