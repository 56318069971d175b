// The two lifecycles the ThinPool benches compare (thin-scale.ts, registry-floor.ts): one volume created,
// activated and deleted through ThinPool, and the same kernel work through the low-level API; each also
// through the sync twins.
import { ThinPool, line, thin } from '../lib';

let seq = 0, lowId = 5_000_000;

/** createVolume + activate + delete: the registry, the commit protocol and the recovery checks. */
export const viaPool = (pool: ThinPool) => async (): Promise<void> => {
  const v = await pool.createVolume(`bench-vol-${seq++}`, '16M');
  await v.activate();
  await v.delete();
};

/**
 * create_thin, CREATE+LOAD+RESUME, REMOVE, delete through the low-level API, ids from a counter, no registry;
 * withTid adds the set_transaction_id commits ThinPool sends.
 */
export const lowLevel = (pool: ThinPool, withTid: boolean) => async (): Promise<void> => {
  const dm = pool.dm, id = lowId++, name = `bench-low-${id}`;
  // message, then (withTid) set_transaction_id from the transaction id read before it, as ThinPool does
  const change = async (text: string) => {
    const tid = withTid ? await pool.transactionId() : 0;
    await dm.message(pool.name, 0, text);
    if (withTid) await dm.message(pool.name, 0, `set_transaction_id ${tid} ${tid + 1}`);
  };
  await change(`create_thin ${id}`);
  await dm.createDevice(name, [line(thin, 0, 32768, { pool: pool.devSpec, deviceId: id })]);
  await dm.remove(name);
  await change(`delete ${id}`);
};

/** viaPool through ThinPool's sync twins. */
export const viaPoolSync = (pool: ThinPool) => async (): Promise<void> => {
  pool.createVolumeSync(`bench-vol-${seq++}`, '16M').activateSync().deleteSync();
};

/** lowLevel through the low-level sync calls. */
export const lowLevelSync = (pool: ThinPool, withTid: boolean) => async (): Promise<void> => {
  const dm = pool.dm, id = lowId++, name = `bench-low-${id}`;
  const change = (text: string) => {
    const tid = withTid ? pool.transactionIdSync() : 0;
    dm.messageSync(pool.name, 0, text);
    if (withTid) dm.messageSync(pool.name, 0, `set_transaction_id ${tid} ${tid + 1}`);
  };
  change(`create_thin ${id}`);
  dm.createDeviceSync(name, [line(thin, 0, 32768, { pool: pool.devSpec, deviceId: id })]);
  dm.removeSync(name);
  change(`delete ${id}`);
};
