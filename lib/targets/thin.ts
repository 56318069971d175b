// The thin target, and the thin status line.
import { dmError } from '../core/errors';
import { Sectors } from '../core/units';
import { checkThinId } from '../core/validate';
import { DeviceSpec, TargetModel, checkDevice, int, sectorCount, words } from './model';

export interface ThinParams {
  pool: DeviceSpec;
  deviceId: number;
  /** Read-only origin for blocks the thin device has not written yet. */
  externalOrigin?: DeviceSpec;
}

export const thin: TargetModel<ThinParams> = {
  type: 'thin',
  format: (p) => [checkDevice(p.pool, 'thin pool'), checkThinId(p.deviceId),
    ...(p.externalOrigin ? [checkDevice(p.externalOrigin, 'external origin')] : [])].join(' '),
  parse: (params) => {
    const w = words(params, 'thin', 2);
    const p: ThinParams = { pool: w[0], deviceId: int(w[1], 'thin', 'device id') };
    if (w[2]) p.externalOrigin = w[2];
    return p;
  },
};

export type ThinStatus =
  | { state: 'ok'; mappedSectors: Sectors; highestMappedSector: Sectors | null }
  | { state: 'Fail' | 'Error' | 'inactive' };

/** `<mapped sectors> <highest mapped sector|->`, or `-` (pool not active), `Fail`, `Error`. */
export function parseThinStatus(params: string): ThinStatus {
  const w = params.trim().split(/\s+/).filter(Boolean);
  if (w[0] === 'Fail' || w[0] === 'Error') return { state: w[0] };
  if (w.length === 1 && w[0] === '-') return { state: 'inactive' };
  if (w.length < 2) throw dmError('ERR_DM_PARSE', `thin status '${params}'`);
  return {
    state: 'ok',
    mappedSectors: sectorCount(w[0], 'thin status', 'mapped sectors'),
    highestMappedSector: w[1] === '-' ? null : sectorCount(w[1], 'thin status', 'highest mapped sector'),
  };
}
