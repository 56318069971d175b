// Block-device helpers and device nodes. Plain C++, callable from any thread; throws SysError.
#pragma once
#include <cstdint>
#include <string>

uint64_t BlockGetSize(const std::string& path);                         // BLKGETSIZE64, bytes
void BlockDiscard(const std::string& path, uint64_t offset, uint64_t length);  // BLKDISCARD, bytes
void BlockFlush(const std::string& path);                               // fsync + BLKFLSBUF
void DeviceNumber(const std::string& path, uint32_t* major, uint32_t* minor);  // st_rdev of a device node
// Makes `path` a block node for major:minor with `mode`, replacing a node that names another device.
// Returns true if it created or replaced the node, false if a right one was already there.
bool EnsureBlockNode(const std::string& path, uint32_t major, uint32_t minor, uint32_t mode);
// Unlinks `path`; a missing node is not an error.
void RemoveNode(const std::string& path);
