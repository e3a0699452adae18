# Installs this build into WORK/prefix, then builds and runs the consumer above with
# find_package(uvchan CONFIG COMPONENTS nats) and with `pkg-config uvchan_nats` (cmake -P, from
# the consumer-nats test). Variables: SOURCE_DIR, BUILD_DIR, WORK, C_COMPILER, C_FLAGS, GENERATOR,
# PKG_CONFIG, LIBDIR, LIBUV_DIR.
# With LIBUV_DIR (the build found libuv through its CMake package, there), the find_package()
# consumer is built once more with pkg-config disabled: libuv and libnats are then found without it
# (libnats by its header and library: cmake/UvchanNatsDependency.cmake).
cmake_minimum_required(VERSION 3.16)
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " cmd "${ARGN}")
    message(FATAL_ERROR "FAILED (${rc}): ${cmd}\n${out}")
  endif()
  set(run_output "${out}" PARENT_SCOPE)
endfunction()
file(REMOVE_RECURSE "${WORK}")
set(prefix "${WORK}/prefix")
run(${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(f include/uvchan_nats.h ${LIBDIR}/pkgconfig/uvchan_nats.pc
          ${LIBDIR}/cmake/uvchan/uvchan_natsTargets.cmake
          ${LIBDIR}/cmake/uvchan/uvchan_natsDependency.cmake)
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
set(ENV{CMAKE_PREFIX_PATH} "${prefix}")
set(ENV{LD_LIBRARY_PATH} "${prefix}/${LIBDIR}")
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/test/nats/consumer" -B "${WORK}/pkg" -G "${GENERATOR}"
    -DCMAKE_C_COMPILER=${C_COMPILER} "-DCMAKE_C_FLAGS=${C_FLAGS}")
run(${CMAKE_COMMAND} --build "${WORK}/pkg")
foreach(exe consumer consumer_static)
  if(EXISTS "${WORK}/pkg/${exe}")
    run("${WORK}/pkg/${exe}")
    message(STATUS "${exe}: ${run_output}")
  endif()
endforeach()
if(LIBUV_DIR)
  run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/test/nats/consumer" -B "${WORK}/nopc" -G "${GENERATOR}"
      -DCMAKE_C_COMPILER=${C_COMPILER} "-DCMAKE_C_FLAGS=${C_FLAGS}"
      -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON "-Dlibuv_DIR=${LIBUV_DIR}")
  if(NOT run_output MATCHES "links libnats as: uvchan::libnats")
    message(FATAL_ERROR "the consumer did not find libnats without pkg-config:\n${run_output}")
  endif()
  run(${CMAKE_COMMAND} --build "${WORK}/nopc")
  run("${WORK}/nopc/consumer")
  message(STATUS "without pkg-config: ${run_output}")
endif()
if(PKG_CONFIG AND EXISTS "${prefix}/${LIBDIR}/libuvchan_nats.so")
  set(ENV{PKG_CONFIG_PATH} "${prefix}/${LIBDIR}/pkgconfig")
  run(${PKG_CONFIG} --cflags --libs uvchan_nats)
  string(STRIP "${run_output}" flags)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  separate_arguments(cflags UNIX_COMMAND "${C_FLAGS}")
  run(${C_COMPILER} ${cflags} "${SOURCE_DIR}/test/nats/consumer/main.c" ${flags}
      -o "${WORK}/pc-consumer")
  run("${WORK}/pc-consumer")
  message(STATUS "pkg-config: ${run_output}")
endif()
