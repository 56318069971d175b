# The musl (Alpine) prebuild for aarch64: see zig.cmake.
set(ZIG_TARGET aarch64-linux-musl)
set(ZIG_PROCESSOR aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/zig.cmake)
