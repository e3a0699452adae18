# Finds libnats >= 3.4, the NATS C client (Debian: libnats-dev), for the optional module uvchan_nats:
# sets uvchan_nats_DEPENDENCY to a target that links it, or to "" when there is none. Never fails
# the configure: a libnats that cannot be used is the same as none.
#
# This build includes it from the top-level CMakeLists.txt; it is also installed (as
# uvchan_natsDependency.cmake) so that find_package(uvchan COMPONENTS nats) finds libnats for the
# projects using the module the same way. In order:
#   1. pkg-config (Debian's libnats.pc);
#   2. the header and the shared library themselves (find_path, find_library; the version from
#      nats/version.h), as the imported target uvchan::libnats;
#   3. the client's own CMake package (cnats::nats or cnats::nats_static, as an upstream install
#      has it; a static-only install needs its link interface), only after a configure of its own
#      loaded it without error: Debian's cnats-config.cmake names a libnats_static.a that the
#      package does not ship, and a find_package() of it would stop this configure.
set(uvchan_nats_DEPENDENCY "")
find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(UVCHAN_PC_LIBNATS QUIET IMPORTED_TARGET libnats>=3.4)
  if(UVCHAN_PC_LIBNATS_FOUND)
    set(uvchan_nats_DEPENDENCY PkgConfig::UVCHAN_PC_LIBNATS)
  endif()
endif()

if(NOT uvchan_nats_DEPENDENCY AND TARGET uvchan::libnats)
  set(uvchan_nats_DEPENDENCY uvchan::libnats) # made by an earlier include in this directory
endif()
if(NOT uvchan_nats_DEPENDENCY)
  find_path(UVCHAN_LIBNATS_INCLUDE_DIR nats/nats.h)
  find_library(UVCHAN_LIBNATS_LIBRARY NAMES nats)
  mark_as_advanced(UVCHAN_LIBNATS_INCLUDE_DIR UVCHAN_LIBNATS_LIBRARY)
  if(UVCHAN_LIBNATS_INCLUDE_DIR AND UVCHAN_LIBNATS_LIBRARY
     AND EXISTS "${UVCHAN_LIBNATS_INCLUDE_DIR}/nats/version.h")
    file(STRINGS "${UVCHAN_LIBNATS_INCLUDE_DIR}/nats/version.h" _uvchan_v
         REGEX "^#define NATS_VERSION_(MAJOR|MINOR)[ \t]+[0-9]+")
    string(REGEX REPLACE ".*NATS_VERSION_MAJOR[ \t]+([0-9]+).*" "\\1" _uvchan_major "${_uvchan_v}")
    string(REGEX REPLACE ".*NATS_VERSION_MINOR[ \t]+([0-9]+).*" "\\1" _uvchan_minor "${_uvchan_v}")
    if("${_uvchan_major}.${_uvchan_minor}" VERSION_GREATER_EQUAL 3.4)
      add_library(uvchan::libnats UNKNOWN IMPORTED)
      set_target_properties(uvchan::libnats PROPERTIES
        IMPORTED_LOCATION "${UVCHAN_LIBNATS_LIBRARY}"
        INTERFACE_INCLUDE_DIRECTORIES "${UVCHAN_LIBNATS_INCLUDE_DIR}")
      set(uvchan_nats_DEPENDENCY uvchan::libnats)
    else()
      message(STATUS "uvchan: ${UVCHAN_LIBNATS_LIBRARY} is libnats "
                     "${_uvchan_major}.${_uvchan_minor}; uvchan_nats needs 3.4 or later")
    endif()
    unset(_uvchan_v)
    unset(_uvchan_major)
    unset(_uvchan_minor)
  endif()
endif()

if(NOT uvchan_nats_DEPENDENCY AND NOT CMAKE_DISABLE_FIND_PACKAGE_cnats)
  # The probe: the same search for the package, in a configure of its own.
  set(_uvchan_probe "${CMAKE_BINARY_DIR}/CMakeFiles/uvchan-cnats-probe")
  file(WRITE "${_uvchan_probe}/CMakeLists.txt"
       "cmake_minimum_required(VERSION 3.16)\nproject(uvchan_cnats_probe NONE)\n"
       "find_package(cnats CONFIG REQUIRED)\n")
  set(_uvchan_args "-DCMAKE_LIBRARY_ARCHITECTURE=${CMAKE_LIBRARY_ARCHITECTURE}")
  foreach(_uvchan_var CMAKE_PREFIX_PATH CMAKE_FIND_ROOT_PATH cnats_DIR)
    if(DEFINED ${_uvchan_var})
      string(REPLACE ";" "\\;" _uvchan_val "${${_uvchan_var}}")
      list(APPEND _uvchan_args "-D${_uvchan_var}=${_uvchan_val}")
    endif()
  endforeach()
  execute_process(COMMAND "${CMAKE_COMMAND}" ${_uvchan_args} -S "${_uvchan_probe}"
                          -B "${_uvchan_probe}/build"
                  RESULT_VARIABLE _uvchan_rc OUTPUT_QUIET ERROR_QUIET)
  if(_uvchan_rc EQUAL 0)
    find_package(cnats CONFIG QUIET)
    foreach(_uvchan_t cnats::nats cnats::nats_static)
      if(NOT uvchan_nats_DEPENDENCY AND TARGET ${_uvchan_t})
        set(uvchan_nats_DEPENDENCY ${_uvchan_t})
      endif()
    endforeach()
  elseif(EXISTS "${_uvchan_probe}/build/CMakeCache.txt")
    file(STRINGS "${_uvchan_probe}/build/CMakeCache.txt" _uvchan_dir REGEX "^cnats_DIR:")
    if(_uvchan_dir AND NOT _uvchan_dir MATCHES "NOTFOUND")
      string(REGEX REPLACE "^cnats_DIR:[A-Z]+=" "" _uvchan_dir "${_uvchan_dir}")
      message(STATUS "uvchan: the CMake package of libnats in ${_uvchan_dir} fails to load, "
                     "not used (Debian's names a libnats_static.a that it does not ship)")
    endif()
  endif()
  file(REMOVE_RECURSE "${_uvchan_probe}")
  unset(_uvchan_probe)
  unset(_uvchan_args)
  unset(_uvchan_var)
  unset(_uvchan_val)
  unset(_uvchan_rc)
  unset(_uvchan_t)
  unset(_uvchan_dir)
endif()
