# Finds libnats, the NATS C client (Debian: libnats-dev), for the optional module uvchan_nats:
# sets uvchan_nats_DEPENDENCY to a target that links it, or to "" when there is none.
#
# This build includes it from the top-level CMakeLists.txt; it is also installed (as
# uvchan_natsDependency.cmake) so that find_package(uvchan COMPONENTS nats) finds libnats for the
# projects using the module the same way. pkg-config first (Debian's libnats.pc), then the
# client's own CMake package (cnats::nats, as an upstream install has it).
set(uvchan_nats_DEPENDENCY "")
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(UVCHAN_PC_LIBNATS QUIET IMPORTED_TARGET libnats>=3.4)
  if(UVCHAN_PC_LIBNATS_FOUND)
    set(uvchan_nats_DEPENDENCY PkgConfig::UVCHAN_PC_LIBNATS)
  endif()
endif()
if(NOT uvchan_nats_DEPENDENCY)
  find_package(cnats CONFIG QUIET)
  foreach(_uvchan_t cnats::nats cnats::nats_static)
    if(NOT uvchan_nats_DEPENDENCY AND TARGET ${_uvchan_t})
      set(uvchan_nats_DEPENDENCY ${_uvchan_t})
    endif()
  endforeach()
  unset(_uvchan_t)
endif()
