export { DeviceMapper, checkTable } from './dm/device-mapper';
export type {
  DeviceRef, Target, DeviceInfo, DeviceListEntry, KernelVersion, TargetVersion, CreateOptions, LoadOptions,
  SuspendOptions, RemoveOptions, QueryOptions, WaitOptions, WaitResult, MessageOptions, Geometry, DeviceMapperOptions, DmBatch,
  NodePolicy,
} from './dm/types';
export { Loop } from './dm/loop';
export type { LoopAttachOptions, LoopDevice, LoopStatus } from './dm/loop';
export { Block, formatDev } from './dm/block';
export { DevmapperError, ErrorCodes } from './core/errors';
export type { DevmapperErrorCode, DeviceHolders, ErrorDetails } from './core/errors';
export { sectors, bytes, bytesToSectors, sectorsToBytes, dataBlocksToSectors, dataBlocksToBytes, parseSize, SECTOR_SIZE, METADATA_BLOCK_SIZE } from './core/units';
export type { Sectors, Bytes, DataBlocks, MetadataBlocks } from './core/units';
export { mapperPath } from './dm/dev-nodes';
export type {
  DevNumber, RawTarget, DmBinding, RawDmRequest, RawDmResponse, RawDmPayload, RawDmDevice, RawTargetVersion, RawDmStep, RawDmSeqResult, RawSysError, Cancellable,
  RawMetadataView, RawMetadataReport, RawSuperblock, RawDiffArgs, RawDiffChunk,
} from './core/binding';
export { MAX_THIN_ID } from './core/validate';
export * as targets from './targets';
export { line, linear, striped, zero, error, flakey, delay, thin, thinPool, parseThinStatus, parseThinPoolStatus, parseTarget } from './targets';
export type { ThinPoolParams, ThinPoolFeatures, ThinPoolStatus, ThinPoolStatusOk, ThinStatus, ThinParams } from './targets';
export { ThinPool, defaultMetadataSize } from './thin/pool';
export type {
  ThinPoolOptions, ThinPoolCreateOptions, ThinPoolAttachOptions, ThinPoolHooks, VolumeListEntry, Step, StatusOptions, DestroyOptions,
  WatchLowWaterOptions, MinFreeSpace, FreeSpaceLimit, DeferredRecovery, RepairOptions, RepairResult,
} from './thin/pool';
export { ThinVolume } from './thin/volume';
export type { PoolEvent, PoolEventType, PoolEventMode, PoolEventsOptions, PoolSpace } from './thin/events';
export type { AutoextendOptions, ExtendRequest } from './thin/autoextend';
export type { ActivateOptions, DeactivateOptions, DeleteVolumeOptions, VolumeDeleteOptions, VolumePool, VolumeUsage } from './thin/volume';
export { LmdbRegistry } from './thin/registry';
export type { RegistryStore, RegistryWrite, VolumeRecord, PendingChange, IntendedChange, IntendResult, MetadataSnapshotHold } from './thin/registry';
export { ThinMetadata } from './thin/metadata';
export type { PoolMetadata, ThinDeviceMetadata, ThinDeviceUsage, PoolUsage, DiffRange, DiffKind, DiffOptions, ReadMetadataOptions } from './thin/metadata';
export type { MetadataReadOptions } from './thin/metadata-snapshot';
export type { PoolCheck, LiveThin, OrphanThin, ReconcileOptions, ReconcilePlan } from './thin/check';
export type { AdoptOptions, DockerImport } from './thin/adopt';
export type {
  CollectOptions, CollectReport, CollectedVolume, CreateVolumeOptions, LeaseEnd, LeaseOptions, SkippedVolume, SnapshotOptions, VolumeLease,
} from './thin/leases';
export { MAX_LEASE_TTL_MS, MAX_PID } from './thin/leases';
