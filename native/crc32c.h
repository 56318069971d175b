// CRC-32C (Castagnoli), as the standard defines it (init and final xor 0xFFFFFFFF): the checksum of every
// thin-pool metadata block is derived from it (thin_metadata.cc).
#pragma once
#include <cstddef>
#include <cstdint>

uint32_t Crc32c(const uint8_t* data, size_t length);
