// Typed targets: builders and parsers for each table format, and the status parsers.
import type { Target } from '../dm/types';
import { dmError } from '../core/errors';
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
export type { FlakeyParams } from './flakey';
export type { DelayParams, DelayPath } from './delay';
export { parseThinStatus } from './thin';
export type { ThinParams, ThinStatus } from './thin';
export { parseThinPoolStatus, checkBlockSize, MIN_BLOCK_SIZE, MAX_BLOCK_SIZE, MAX_METADATA_SECTORS } from './thin-pool';
export type { ThinPoolParams, ThinPoolFeatures, ThinPoolStatus, ThinPoolStatusOk, PoolMode } from './thin-pool';

const models: TargetModel<unknown>[] = [linear, striped, zero, error, flakey, delay, thin, thinPool] as TargetModel<unknown>[];
const byType = new Map(models.map((m) => [m.type, m]));

/** The model for a table line's type. */
export function modelOf(type: string): TargetModel<unknown> {
  const m = byType.get(type);
  if (!m) throw dmError('ERR_DM_PARSE', `no model for target type '${type}'`);
  return m;
}

/** Reads a table line (as DeviceMapper.table() returns it) into its typed params. */
export function parseTarget(t: Target): { type: string; params: unknown } {
  return { type: t.type, params: modelOf(t.type).parse(t.params) };
}
