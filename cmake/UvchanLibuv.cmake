# uvchan_find_libuv(<var> [REQUIRED]): sets <var> to the target that links libuv >= 1.44, or to ""
# when there is none (a fatal error with REQUIRED).
#
# One finder for both sides: this build includes it from cmake/UvchanDeps.cmake, and it is installed
# beside uvchanConfig.cmake so that find_package(uvchan) finds libuv for the projects using uvchan
# the same way. Debian's libuv1-dev 1.44 ships only pkg-config files, so pkg-config comes first;
# libuv's own CMake package (an upstream install, >= 1.45: libuv::uv) is the fallback.
function(uvchan_find_libuv var)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(UVCHAN_PC_LIBUV QUIET IMPORTED_TARGET libuv>=1.44)
  endif()
  if(UVCHAN_PC_LIBUV_FOUND)
    set(${var} PkgConfig::UVCHAN_PC_LIBUV PARENT_SCOPE)
    return()
  endif()
  find_package(libuv CONFIG QUIET)
  foreach(target libuv::uv uv uv_a)
    if(TARGET ${target})
      set(${var} ${target} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  list(FIND ARGN REQUIRED required) # not IN_LIST: the caller's policies may predate it
  if(required GREATER -1)
    if(libuv_FOUND)
      message(FATAL_ERROR "uvchan: libuv's CMake package (${libuv_DIR}) exports no known target "
                          "(libuv::uv, uv, uv_a)")
    endif()
    message(FATAL_ERROR "uvchan: libuv >= 1.44 not found: install libuv1-dev (pkg-config), or point "
                        "CMAKE_PREFIX_PATH at a libuv install")
  endif()
  set(${var} "" PARENT_SCOPE)
endfunction()
