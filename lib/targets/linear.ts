import { Sectors } from '../core/units';
import { DeviceSpec, TargetModel, checkDevice, checkExtra, checkParams, checkSectors, device, extraWords, join, needWords, sectorCount, words } from './model';

/** `<device> <offset>`. */
export interface LinearParams {
  /** The device mapped onto. */
  device: DeviceSpec;
  /** Where on it the mapping starts, in sectors. */
  offset: Sectors;
  /**
   * Words after the offset, which today's kernels neither take nor print: parse() keeps any a newer kernel
   * prints here (the field is present only when there are such words) and format() writes them back.
   */
  extra?: string[];
}

/** The linear target: maps the line onto a range of another device. */
export const linear: TargetModel<LinearParams> = {

  type: 'linear',
  format: (p) => {
    const o = checkParams<LinearParams>(p, ['device', 'offset', 'extra'], 'linear');
    const dev = checkDevice(o.device, 'linear device');
    const offset = checkSectors(o.offset, 'linear offset');
    return join([dev, offset, ...checkExtra(o.extra, 'linear')]);
  },
  parse: (params) => {
    const w = words(params, 'linear');
    needWords(w, 2, 'linear');
    const p: LinearParams = { device: device(w[0], 'linear', 'device'), offset: sectorCount(w[1], 'linear', 'offset') };
    const extra = extraWords(w, 2, 'linear');
    if (extra) p.extra = extra;
    return p;
  },
};
