# The musl (Alpine) prebuild for x86_64: see zig.cmake.
set(ZIG_TARGET x86_64-linux-musl)
set(ZIG_PROCESSOR x86_64)
include(${CMAKE_CURRENT_LIST_DIR}/zig.cmake)
