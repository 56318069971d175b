import { Sectors, sectors } from '../core/units';
import { DeviceSpec, TargetModel, checkDevice, sectorCount, words } from './model';

export interface LinearParams { device: DeviceSpec; offset: Sectors }

export const linear: TargetModel<LinearParams> = {
  type: 'linear',
  format: (p) => `${checkDevice(p.device, 'linear device')} ${sectors(p.offset)}`,
  parse: (params) => {
    const w = words(params, 'linear', 2);
    return { device: w[0], offset: sectorCount(w[1], 'linear', 'offset') };
  },
};
