export { DeviceMapper, checkTable } from './device-mapper';
export type {
  DeviceRef, Target, DeviceInfo, DeviceListEntry, KernelVersion, TargetVersion, CreateOptions, LoadOptions,
  SuspendOptions, RemoveOptions, QueryOptions, WaitOptions, WaitResult, MessageOptions, Geometry, DeviceMapperOptions,
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
