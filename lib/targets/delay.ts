import { Sectors, sectors } from '../core/units';
import { checkInteger } from '../core/validate';
import { DeviceSpec, TargetModel, checkDevice, int, sectorCount, words } from './model';

export interface DelayPath { device: DeviceSpec; offset: Sectors; delayMs: number }
/** Reads (and, unless `write` is given, writes) go to `read` after its delay; flushes may have their own. */
export interface DelayParams { read: DelayPath; write?: DelayPath; flush?: DelayPath }

const fmt = (d: DelayPath, what: string) => `${checkDevice(d.device, `delay ${what} device`)} ${sectors(d.offset)} ${checkInteger(d.delayMs, 'delayMs')}`;
const parsePath = (w: string[], i: number): DelayPath =>
  ({ device: w[i], offset: sectorCount(w[i + 1], 'delay', 'offset'), delayMs: int(w[i + 2], 'delay', 'delay') });

export const delay: TargetModel<DelayParams> = {
  type: 'delay',
  format: (p) => [fmt(p.read, 'read'), ...(p.write ? [fmt(p.write, 'write')] : []), ...(p.flush && p.write ? [fmt(p.flush, 'flush')] : [])].join(' '),
  parse: (params) => {
    const w = words(params, 'delay', 3);
    const p: DelayParams = { read: parsePath(w, 0) };
    if (w.length >= 6) p.write = parsePath(w, 3);
    if (w.length >= 9) p.flush = parsePath(w, 6);
    return p;
  },
};
