export { DeviceMapper, checkTable } from './device-mapper';
export type {
  DeviceRef, Target, DeviceInfo, DeviceListEntry, KernelVersion, TargetVersion, CreateOptions, LoadOptions,
  SuspendOptions, RemoveOptions, QueryOptions, WaitOptions, WaitResult, MessageOptions, Geometry, DeviceMapperOptions, DmBatch,
} from './device-mapper';
export { Loop } from './loop';
export type { LoopAttachOptions, LoopDevice, LoopStatus } from './loop';
export { Block, formatDev } from './block';
export { DevmapperError, ErrorCodes } from './errors';
export type { DevmapperErrorCode } from './errors';
export { sectors, bytes, bytesToSectors, sectorsToBytes, parseSize, SECTOR_SIZE } from './units';
export type { Sectors, Bytes } from './units';
export { mapperPath } from './dev-nodes';
export type { DevNumber } from './native';
export { MAX_THIN_ID } from './validate';
export * as targets from './targets';
export { line, linear, striped, zero, error, flakey, delay, thin, thinPool, parseThinStatus, parseThinPoolStatus, parseTarget } from './targets';
export type { ThinPoolParams, ThinPoolFeatures, ThinPoolStatus, ThinPoolStatusOk, ThinStatus, ThinParams } from './targets';
export { ThinPool, defaultMetadataSize } from './thin/pool';
export type { ThinPoolOptions, ThinPoolCreateOptions, ThinPoolAttachOptions, ThinPoolHooks, VolumeListEntry, Step } from './thin/pool';
export { ThinVolume } from './thin/volume';
export type { DeactivateOptions, DeleteVolumeOptions, VolumePool, VolumeUsage } from './thin/volume';
export { LmdbRegistry } from './thin/registry';
export type { RegistryStore, RegistryWrite, VolumeRecord, PendingChange, IntendedChange } from './thin/registry';
