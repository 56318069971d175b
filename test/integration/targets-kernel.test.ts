// Each typed target, loaded into the real kernel and read back (STATUS_TABLE), gives the line it formatted.
import { DeviceMapper, sectors, delay, error, flakey, line, linear, parseTarget, striped, thin, thinPool, zero, Target } from '../../lib';
import { removeQuietly, scratchLoop, swapTable, uniqueName, zeroMetadata } from './helpers';

test('every model round-trips through the kernel', async () => {
  const dm = new DeviceMapper();
  const a = scratchLoop(16 << 20), b = scratchLoop(16 << 20), meta = scratchLoop(8 << 20);
  zeroMetadata(meta.path);
  const A = `7:${a.number}`, B = `7:${b.number}`;
  const name = uniqueName('models');
  const pool = uniqueName('mpool');
  const tables: Target[][] = [
    [line(linear, 0, 2048, { device: A, offset: sectors(16) })],
    [line(striped, 0, 4096, { chunkSize: sectors(256), stripes: [{ device: A, offset: sectors(0) }, { device: B, offset: sectors(512) }] })],
    [line(zero, 0, 1024, {}), line(error, 1024, 1024, {})],
    [line(flakey, 0, 2048, { device: A, offset: sectors(0), upInterval: 60, downInterval: 0 })],
    [line(flakey, 0, 2048, { device: A, offset: sectors(0), upInterval: 1, downInterval: 1, errorWrites: true })],
    [line(delay, 0, 2048, { read: { device: A, offset: sectors(0), delayMs: 0 } })],
    [line(delay, 0, 2048, { read: { device: A, offset: sectors(0), delayMs: 1 }, write: { device: B, offset: sectors(8), delayMs: 2 } })],
  ];
  try {
    await dm.create(name);
    // Kernels whose flakey has error_reads (6.12; not 6.1) spell out what a table without features means,
    // failing reads and writes while down: they read such a table back with both features.
    const errorReads = [line(flakey, 0, 2048, { device: A, offset: sectors(0), upInterval: 1, downInterval: 1, errorReads: true })];
    const hasErrorReads = await swapTable(dm, name, errorReads).then(() => true, () => false);
    if (hasErrorReads) tables.push(errorReads);
    const FEATURES = ['errorReads', 'dropWrites', 'errorWrites', 'corruptBioByte', 'randomReadCorrupt', 'randomWriteCorrupt'] as const;
    const readBack = (t: Target[]) => (hasErrorReads ? t.map((x) => {
      if (x.type !== 'flakey') return x;
      const p = flakey.parse(x.params);
      return FEATURES.some((f) => p[f] !== undefined && p[f] !== false) ? x : line(flakey, x.start, x.length, { ...p, errorReads: true, errorWrites: true });
    }) : t);
    for (const t of tables) {
      const back = await swapTable(dm, name, t);
      expect(back.map((x) => ({ ...x, params: x.params.trimEnd() }))).toEqual(readBack(t));
      back.forEach((x, i) => expect(parseTarget(x)).toEqual(parseTarget(readBack(t)[i])));
    }
    const poolLine = line(thinPool, 0, 32768, { metadataDev: `7:${meta.number}`, dataDev: B, blockSize: sectors(128), lowWaterMark: 7,
      features: { skipBlockZeroing: true, noDiscardPassdown: true, errorIfNoSpace: true } });
    const p = await dm.createDevice(pool, [poolLine]);
    expect((await dm.table(pool)).map((x) => x.params.trimEnd())).toEqual([poolLine.params]);
    await dm.message(pool, 0, 'create_thin 0');
    const thinLine = line(thin, 0, 2048, { pool: `${p.dev.major}:${p.dev.minor}`, deviceId: 0, externalOrigin: A });
    expect((await swapTable(dm, name, [thinLine])).map((x) => x.params.trimEnd())).toEqual([thinLine.params]);
  } finally {
    removeQuietly(dm, name, pool);
    dm.close();
    a.detach(); b.detach(); meta.detach();
  }
});
