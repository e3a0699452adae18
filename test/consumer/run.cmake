# Builds and runs test/consumer, a project using uvchan, in one of the ways users take it
# (cmake -P, from the consumer-* tests in test/CMakeLists.txt):
#   MODE=install       `cmake --install` this build into WORK/prefix, check what is there, then
#                      build the consumer with find_package(uvchan CONFIG) and, by hand, with the
#                      flags `pkg-config uvchan` gives (shared, and --static)
#   MODE=subdirectory  add_subdirectory(<uvchan source>)
#   MODE=fetchcontent  FetchContent from the uvchan source directory (no network)
# Other variables: SOURCE_DIR, BUILD_DIR (this build), WORK (scratch, emptied first), C_COMPILER,
# C_FLAGS (the sanitizer flags of a sanitizer build), GENERATOR, MAKE_PROGRAM, BUILD_SHARED,
# BUILD_STATIC, LIBDIR, PREFIX_PATH, NO_PKGCONFIG, PKG_CONFIG, VERSION, SOVERSION.
cmake_minimum_required(VERSION 3.16)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "FAILED (${rc}): ${cmd}\n${out}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()

function(check_exists)
  foreach(f ${ARGN})
    if(NOT EXISTS "${f}")
      message(FATAL_ERROR "not installed: ${f}")
    endif()
  endforeach()
endfunction()

# Runs a consumer program; it checks its own results and prints one line.
function(run_program exe)
  run(${exe})
  string(STRIP "${run_output}" line)
  message(STATUS "${exe}: ${line}")
endfunction()

# Configures and builds test/consumer with the given way (package, subdirectory, fetchcontent),
# then runs what it built.
function(build_consumer way)
  set(dir "${WORK}/${way}")
  set(args -S "${SOURCE_DIR}/test/consumer" -B "${dir}" -G "${GENERATOR}"
      -DCMAKE_C_COMPILER=${C_COMPILER} "-DCMAKE_C_FLAGS=${C_FLAGS}" -DCMAKE_BUILD_TYPE=Debug
      -DUVCHAN_CONSUME=${way} -DUVCHAN_SOURCE_DIR=${SOURCE_DIR}
      -DUVCHAN_BUILD_SHARED=${BUILD_SHARED} -DUVCHAN_BUILD_STATIC=${BUILD_STATIC}
      -DUVCHAN_EXPECT_SHARED=${BUILD_SHARED})
  if(MAKE_PROGRAM)
    list(APPEND args -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
  endif()
  if(NO_PKGCONFIG)
    list(APPEND args -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON)
  endif()
  # The prefixes to search (the install, libuv's): through the environment, where a list needs no
  # escaping on its way through a command line.
  string(REPLACE ";" ":" prefixes "${ARGN}")
  set(ENV{CMAKE_PREFIX_PATH} "${prefixes}")
  run(${CMAKE_COMMAND} ${args})
  cmake_host_system_information(RESULT jobs QUERY NUMBER_OF_LOGICAL_CORES)
  run(${CMAKE_COMMAND} --build "${dir}" --parallel ${jobs})
  run_program("${dir}/consumer")
  if(BUILD_STATIC)
    run_program("${dir}/consumer_static")
  endif()
endfunction()

# What a program needs from the dynamic loader (empty when readelf is missing).
function(needed exe var)
  set(${var} "" PARENT_SCOPE)
  find_program(READELF readelf)
  if(READELF)
    run(${READELF} -d "${exe}")
    set(${var} "${run_output}" PARENT_SCOPE)
  endif()
endfunction()

file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")

if(MODE STREQUAL "subdirectory" OR MODE STREQUAL "fetchcontent")
  build_consumer(${MODE} ${PREFIX_PATH})
  return()
elseif(NOT MODE STREQUAL "install")
  message(FATAL_ERROR "MODE: install, subdirectory or fetchcontent")
endif()

# The install, and what must be in it: every public header of the source tree, the libraries
# (the shared one under its SONAME), the CMake package and the pkg-config file.
set(prefix "${WORK}/prefix")
run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
file(GLOB_RECURSE headers RELATIVE "${SOURCE_DIR}/include" "${SOURCE_DIR}/include/uvchan/*.h")
foreach(h uvchan.h ${headers})
  check_exists("${prefix}/include/${h}")
endforeach()
set(lib "${prefix}/${LIBDIR}")
check_exists("${lib}/cmake/uvchan/uvchanConfig.cmake" "${lib}/cmake/uvchan/uvchanConfigVersion.cmake"
             "${lib}/pkgconfig/uvchan.pc")
if(BUILD_SHARED)
  check_exists("${lib}/libuvchan.so" "${lib}/libuvchan.so.${SOVERSION}" "${lib}/libuvchan.so.${VERSION}")
  needed("${lib}/libuvchan.so.${VERSION}" dyn)
  if(dyn AND NOT dyn MATCHES "SONAME[^\n]*\\[libuvchan\\.so\\.${SOVERSION}\\]")
    message(FATAL_ERROR "libuvchan.so has no SONAME libuvchan.so.${SOVERSION}:\n${dyn}")
  endif()
endif()
if(BUILD_STATIC)
  check_exists("${lib}/libuvchan.a")
endif()

# find_package(uvchan CONFIG).
build_consumer(package "${prefix}" ${PREFIX_PATH})

# pkg-config, as a Makefile would use it.
if(NOT PKG_CONFIG)
  message(STATUS "pkg-config not found: the pkg-config consumer is skipped")
  return()
endif()
# The install's directory first, then those of the prefixes this build found libuv in.
set(pc_path "${lib}/pkgconfig")
foreach(p ${PREFIX_PATH})
  list(APPEND pc_path "${p}/${LIBDIR}/pkgconfig" "${p}/lib/pkgconfig")
endforeach()
string(REPLACE ";" ":" pc_path "${pc_path}")
set(ENV{PKG_CONFIG_PATH} "${pc_path}:$ENV{PKG_CONFIG_PATH}")
execute_process(COMMAND ${PKG_CONFIG} --exists "libuv >= 1.44" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  # uvchan.pc requires libuv.pc: a libuv installed without it (only its CMake package) cannot be
  # used through pkg-config at all.
  message(STATUS "pkg-config finds no libuv >= 1.44: the pkg-config consumer is skipped")
  return()
endif()
run(${PKG_CONFIG} --modversion uvchan)
string(STRIP "${run_output}" pc_version)
if(NOT pc_version STREQUAL VERSION)
  message(FATAL_ERROR "pkg-config --modversion uvchan: ${pc_version}, not ${VERSION}")
endif()
run(${PKG_CONFIG} --variable=prefix uvchan)
string(STRIP "${run_output}" pc_prefix)
if(NOT pc_prefix STREQUAL prefix)
  message(FATAL_ERROR "uvchan.pc names the prefix ${pc_prefix}, not the install's ${prefix}")
endif()
separate_arguments(c_flags UNIX_COMMAND "${C_FLAGS}")

# Compiles consumer.c into `exe` with the flags pkg-config printed. Every library directory they
# name (the install's, libuv's when it is not the system's) goes into the program's run path, as a
# user's build outside the system prefix needs.
function(build_with_pkg_config exe flags)
  separate_arguments(pc_flags UNIX_COMMAND "${flags}")
  set(rpaths "")
  foreach(flag ${pc_flags})
    if(flag MATCHES "^-L(.+)")
      list(APPEND rpaths "-Wl,-rpath,${CMAKE_MATCH_1}")
    endif()
  endforeach()
  run(${C_COMPILER} ${c_flags} -Wall -Wextra -Werror "${SOURCE_DIR}/test/consumer/consumer.c"
      -o "${exe}" ${pc_flags} ${rpaths})
endfunction()

if(BUILD_SHARED)
  run(${PKG_CONFIG} --cflags --libs uvchan)
  set(exe "${WORK}/consumer-pkg-config")
  build_with_pkg_config("${exe}" "${run_output}")
  needed("${exe}" dyn)
  if(dyn AND NOT dyn MATCHES "libuvchan\\.so\\.${SOVERSION}")
    message(FATAL_ERROR "${exe} does not load libuvchan.so.${SOVERSION}:\n${dyn}")
  endif()
  run_program("${exe}")
endif()
if(BUILD_STATIC)
  # --static adds libuv's private libraries; -l:libuvchan.a takes the archive beside the .so.
  run(${PKG_CONFIG} --static --cflags --libs uvchan)
  string(REPLACE "-luvchan" "-l:libuvchan.a" flags "${run_output}")
  set(exe "${WORK}/consumer-pkg-config-static")
  build_with_pkg_config("${exe}" "${flags}")
  needed("${exe}" dyn)
  if(dyn MATCHES "libuvchan")
    message(FATAL_ERROR "${exe} loads libuvchan dynamically:\n${dyn}")
  endif()
  run_program("${exe}")
endif()
