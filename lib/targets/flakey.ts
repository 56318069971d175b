import { Sectors, sectors } from '../core/units';
import { checkInteger } from '../core/validate';
import { DeviceSpec, TargetModel, checkDevice, int, sectorCount, words } from './model';

/** Up for upInterval seconds, then down (failing or dropping I/O) for downInterval seconds, repeating. */
export interface FlakeyParams {
  device: DeviceSpec;
  offset: Sectors;
  upInterval: number;
  downInterval: number;
  /** While down: drop writes silently, or fail them (reads fail unless one of these is set). */
  dropWrites?: boolean;
  errorWrites?: boolean;
}

export const flakey: TargetModel<FlakeyParams> = {
  type: 'flakey',
  format: (p) => {
    const features = [...(p.dropWrites ? ['drop_writes'] : []), ...(p.errorWrites ? ['error_writes'] : [])];
    return [checkDevice(p.device, 'flakey device'), sectors(p.offset), checkInteger(p.upInterval, 'upInterval'),
      checkInteger(p.downInterval, 'downInterval'), features.length, ...features].join(' ');
  },
  parse: (params) => {
    const w = words(params, 'flakey', 4);
    const features = w.slice(5, 5 + int(w[4] ?? '0', 'flakey', 'feature count'));
    const p: FlakeyParams = {
      device: w[0], offset: sectorCount(w[1], 'flakey', 'offset'),
      upInterval: int(w[2], 'flakey', 'up interval'), downInterval: int(w[3], 'flakey', 'down interval'),
    };
    if (features.includes('drop_writes')) p.dropWrites = true;
    if (features.includes('error_writes')) p.errorWrites = true;
    return p;
  },
};
