// Targets without params: the kernel prints nothing back for them.
import { dmError } from '../core/errors';
import { show } from '../core/validate';
import { TargetModel, checkParams, words } from './model';

function noParams(type: string): TargetModel<Record<string, never>> {
  return {
    type,
    format: (p) => {
      checkParams<Record<string, never>>(p, [], type);
      return '';
    },
    parse: (params) => {
      const w = words(params, type);
      if (w.length) throw dmError('ERR_DM_PARSE', `${type} takes no params, got ${show(params)}`);
      return {};
    },
  };
}

/** The zero target: reads return zeros, writes are dropped. Params: `{}`. */
export const zero = noParams('zero');
/** The error target: every I/O fails. Params: `{}`. */
export const error = noParams('error');

