# The glibc 2.17 (RHEL/Alma 8, Ubuntu 20.04, Amazon Linux 2 and newer) prebuild for aarch64: see zig.cmake.
set(ZIG_TARGET aarch64-linux-gnu.2.17)
set(ZIG_PROCESSOR aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/zig.cmake)
