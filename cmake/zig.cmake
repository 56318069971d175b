# Cross builds with Zig's clang (zig cc / zig c++), which carries the libc headers and stubs of every target,
# glibc versioned (x86_64-linux-gnu.2.17 links only symbols glibc 2.17 has), and links libc++ statically.
# Included by the per-target files beside it, which set ZIG_TARGET and the system; ZIG names the zig binary
# (scripts/prebuilds.sh sets it), otherwise zig on PATH.
if(NOT ZIG)
  if(DEFINED ENV{ZIG})
    set(ZIG "$ENV{ZIG}")
  else()
    find_program(ZIG zig REQUIRED)
  endif()
endif()
# Try-compile projects run this file again and need these.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES ZIG ZIG_TARGET)

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${ZIG_PROCESSOR})

# One wrapper per tool: CMake wants a single program for each, with the target fixed.
set(_zig_bin ${CMAKE_BINARY_DIR}/zig-${ZIG_TARGET})
file(MAKE_DIRECTORY ${_zig_bin})
foreach(_tool cc c++ ar ranlib)
  if(_tool MATCHES "^(cc|c\\+\\+)$")
    set(_args "${_tool} -target ${ZIG_TARGET}")
  else()
    set(_args "${_tool}")
  endif()
  file(WRITE ${_zig_bin}/${_tool} "#!/bin/sh\nexec \"${ZIG}\" ${_args} \"$@\"\n")
  file(CHMOD ${_zig_bin}/${_tool} PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endforeach()
set(CMAKE_C_COMPILER ${_zig_bin}/cc)
set(CMAKE_CXX_COMPILER ${_zig_bin}/c++)
set(CMAKE_AR ${_zig_bin}/ar CACHE FILEPATH "" FORCE)
set(CMAKE_RANLIB ${_zig_bin}/ranlib CACHE FILEPATH "" FORCE)

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)

# libc++, libc++abi and libunwind are linked in statically: only Node's entry points are exported, so none of
# them interposes on (or is interposed by) the libstdc++ and libgcc_s that Node or other addons load. Stripped.
set(DEVMAPPER_LINK_OPTIONS "-Wl,--version-script=${CMAKE_CURRENT_LIST_DIR}/exports.map" -s)
