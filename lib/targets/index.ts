// Typed targets: builders and parsers for each table format, and the status parsers.
import type { Target } from '../dm/types';
import { dmError } from '../core/errors';
import { show } from '../core/validate';
import { delay } from './delay';
import { flakey } from './flakey';
import { linear } from './linear';
import { TargetModel } from './model';
import { error, zero } from './simple';
import { striped } from './striped';
import { thin } from './thin';
import { thinPool } from './thin-pool';

export { line, checkDevice } from './model';
export type { TargetModel, DeviceSpec } from './model';
export { linear, striped, zero, error, flakey, delay, thin, thinPool };
export type { LinearParams } from './linear';
export type { StripedParams } from './striped';
export { FLAKEY_PROBABILITY_BASE } from './flakey';
export type { FlakeyParams, FlakeyCorruptBioByte } from './flakey';
export type { DelayParams, DelayPath } from './delay';
export { parseThinStatus } from './thin';
export type { ThinParams, ThinStatus } from './thin';
export { parseThinPoolStatus, checkBlockSize, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, MAX_METADATA_SECTORS } from './thin-pool';
export type { ThinPoolParams, ThinPoolFeatures, ThinPoolStatus, ThinPoolStatusOk, PoolMode } from './thin-pool';

const models: TargetModel<unknown>[] = [linear, striped, zero, error, flakey, delay, thin, thinPool] as TargetModel<unknown>[];
const byType = new Map(models.map((m) => [m.type, m]));

/** The model for a table line's type. */
export function modelOf(type: string): TargetModel<unknown> {
  const m = typeof type === 'string' ? byType.get(type) : undefined;
  if (!m) throw dmError('ERR_DM_PARSE', `no model for target type ${show(type)}`);
  return m;
}

/** Reads a table line (as DeviceMapper.table() returns it) into its typed params. */
export function parseTarget(t: Target): {
  /** The target type. */
  type: string;
  /** Its params, as its model's parse() reads them. */
  params: unknown;
} {

  if (t === null || typeof t !== 'object') throw dmError('ERR_DM_PARSE', `a target must be an object, got ${show(t)}`);
  const type: unknown = t.type, params: unknown = t.params;
  return { type: type as string, params: modelOf(type as string).parse(params as string) };
}
