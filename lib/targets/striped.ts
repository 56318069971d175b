import { dmError } from '../core/errors';
import { Sectors, sectors } from '../core/units';
import { DeviceSpec, TargetModel, checkDevice, int, sectorCount, words } from './model';

export interface StripedParams { chunkSize: Sectors; stripes: { device: DeviceSpec; offset: Sectors }[] }

export const striped: TargetModel<StripedParams> = {
  type: 'striped',
  format: (p) => {
    if (!p.stripes?.length) throw dmError('ERR_DM_INVALID_TABLE', 'striped needs at least one stripe');
    const chunk = sectors(p.chunkSize);
    if (chunk < 8 || (chunk & (chunk - 1)) !== 0) throw dmError('ERR_DM_INVALID_TABLE', `striped chunk size must be a power of two >= 8 sectors, got ${chunk}`);
    return [p.stripes.length, chunk, ...p.stripes.flatMap((s) => [checkDevice(s.device, 'stripe device'), sectors(s.offset)])].join(' ');
  },
  parse: (params) => {
    const w = words(params, 'striped', 4);
    const n = int(w[0], 'striped', 'stripe count');
    const stripes = Array.from({ length: n }, (_, i) => ({ device: w[2 + 2 * i], offset: sectorCount(w[3 + 2 * i], 'striped', 'offset') }));
    return { chunkSize: sectorCount(w[1], 'striped', 'chunk size'), stripes };
  },
};
