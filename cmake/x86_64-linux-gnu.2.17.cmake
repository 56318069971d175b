# The glibc 2.17 (RHEL/Alma 8, Ubuntu 20.04, Amazon Linux 2 and newer) prebuild for x86_64: see zig.cmake.
set(ZIG_TARGET x86_64-linux-gnu.2.17)
set(ZIG_PROCESSOR x86_64)
include(${CMAKE_CURRENT_LIST_DIR}/zig.cmake)
