// Targets without params.
import { dmError } from '../core/errors';
import { TargetModel } from './model';

function noParams(type: string): TargetModel<Record<string, never>> {
  return {
    type,
    format: () => '',
    parse: (params) => {
      if (params.trim()) throw dmError('ERR_DM_PARSE', `${type} takes no params, got '${params}'`);
      return {};
    },
  };
}

export const zero = noParams('zero');
export const error = noParams('error');
