# How uvchan's libraries are built and installed. The core (top-level CMakeLists.txt) and every
# optional module (uvchan_add_module below) go through the same functions, so a module gets the
# same pair of libraries, the same aliases and the same kind of install as the core.
#
# uvchan_add_libraries(<name> ...) makes, from one list of sources:
#   <name>_shared          lib<name>.so.MAJOR (the SONAME), when UVCHAN_BUILD_SHARED
#   <name>_static          lib<name>.a, when UVCHAN_BUILD_STATIC
#   <name>                 alias of the one this project's own programs (tests, examples, bench,
#                          fuzz) link: the static library, as always, unless -DBUILD_SHARED_LIBS=ON
#                          or the static one is off
#   uvchan::<name>         alias of what an install exports under that name: the shared library,
#                          or the static one when the shared one is off
#   uvchan::<name>_static  alias of <name>_static
# The static library is compiled on its own (not from the shared library's position-independent
# objects), so it is the same code the benchmarks have always measured.
#
# Installed (UVCHAN_INSTALL, default on when uvchan is the top-level project), under the prefix:
#   include/                          the headers
#   lib/lib<name>.so*, lib<name>.a    the libraries
#   lib/pkgconfig/<name>.pc           for pkg-config; its prefix is the one given at install time
#                                     (cmake --install build --prefix P)
#   lib/cmake/uvchan/                 uvchanConfig.cmake, uvchanConfigVersion.cmake (same major
#                                     version), uvchanTargets.cmake, UvchanLibuv.cmake (which finds
#                                     libuv for the project using uvchan the way this build does), and
#                                     each module's uvchan_<module>Targets.cmake and dependency file
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(UVCHAN_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/uvchan")

# uvchan_add_libraries(<name> SOURCES <file>... [LINK_PAIR <name>] [DEPENDENCY <target> <installed>]
#                      [OUT_TARGETS <var>])
#   LINK_PAIR   another pair made by this function: <name>_shared links its shared library,
#               <name>_static its static one (a module links the core this way)
#   DEPENDENCY  a field library: <target> as this build found it, and the name of the target that
#               the installed package config defines for it (an install must not name a target
#               that only exists in this build, e.g. a pkg-config one)
#   OUT_TARGETS <var> receives the real targets made (for per-library settings)
function(uvchan_add_libraries name)
  cmake_parse_arguments(ARG "" "LINK_PAIR;OUT_TARGETS" "SOURCES;DEPENDENCY" ${ARGN})
  set(targets "")
  if(UVCHAN_BUILD_SHARED)
    add_library(${name}_shared SHARED ${ARG_SOURCES})
    set_target_properties(${name}_shared PROPERTIES
      OUTPUT_NAME ${name}
      EXPORT_NAME ${name}
      VERSION ${PROJECT_VERSION}
      SOVERSION ${PROJECT_VERSION_MAJOR})
    target_compile_definitions(${name}_shared PRIVATE UVCHAN_BUILDING_SHARED)
    if(WIN32)
      target_compile_definitions(${name}_shared INTERFACE UVCHAN_USING_SHARED)
    endif()
    if(ARG_LINK_PAIR)
      target_link_libraries(${name}_shared PUBLIC ${ARG_LINK_PAIR}_shared)
    endif()
    list(APPEND targets ${name}_shared)
  endif()
  if(UVCHAN_BUILD_STATIC)
    add_library(${name}_static STATIC ${ARG_SOURCES})
    set_target_properties(${name}_static PROPERTIES
      OUTPUT_NAME ${name}
      EXPORT_NAME ${name}_static)
    # A shared library of another project (or a shared module) may take it in.
    if(BUILD_SHARED_LIBS OR NOT UVCHAN_BUILD_SHARED)
      set_target_properties(${name}_static PROPERTIES POSITION_INDEPENDENT_CODE ON)
    endif()
    if(ARG_LINK_PAIR)
      target_link_libraries(${name}_static PUBLIC ${ARG_LINK_PAIR}_static)
    endif()
    list(APPEND targets ${name}_static)
    add_library(uvchan::${name}_static ALIAS ${name}_static)
  endif()

  foreach(t ${targets})
    target_include_directories(${t} PUBLIC
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
    if(ARG_DEPENDENCY)
      list(GET ARG_DEPENDENCY 0 dep_build)
      list(GET ARG_DEPENDENCY 1 dep_installed)
      target_link_libraries(${t} PUBLIC
        $<BUILD_INTERFACE:${dep_build}> $<INSTALL_INTERFACE:${dep_installed}>)
    endif()
    target_compile_options(${t} PRIVATE ${UVCHAN_WARNINGS})
    set_target_properties(${t} PROPERTIES C_VISIBILITY_PRESET hidden)
  endforeach()

  if(UVCHAN_BUILD_SHARED)
    add_library(uvchan::${name} ALIAS ${name}_shared)
  else()
    add_library(uvchan::${name} ALIAS ${name}_static)
  endif()
  if(UVCHAN_BUILD_STATIC AND (NOT BUILD_SHARED_LIBS OR NOT UVCHAN_BUILD_SHARED))
    add_library(${name} ALIAS ${name}_static)
  else()
    add_library(${name} ALIAS ${name}_shared)
  endif()
  if(ARG_OUT_TARGETS)
    set(${ARG_OUT_TARGETS} ${targets} PARENT_SCOPE)
  endif()
endfunction()

# uvchan_install_libraries(<name> TARGETS <target>... EXPORT <set> HEADERS <file>...
#                          [HEADER_DIRS <dir>...] DESCRIPTION <text> [PC_REQUIRES <module>...])
# Installs a pair made by uvchan_add_libraries(), its headers, its export set (as <set>.cmake in
# lib/cmake/uvchan, targets named uvchan::<name>...) and <name>.pc.
function(uvchan_install_libraries name)
  cmake_parse_arguments(ARG "" "EXPORT;DESCRIPTION" "TARGETS;HEADERS;HEADER_DIRS;PC_REQUIRES" ${ARGN})
  install(TARGETS ${ARG_TARGETS} EXPORT ${ARG_EXPORT}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT ${ARG_EXPORT} NAMESPACE uvchan:: DESTINATION ${UVCHAN_INSTALL_CMAKEDIR})
  if(ARG_HEADERS)
    install(FILES ${ARG_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  endif()
  foreach(dir ${ARG_HEADER_DIRS})
    install(DIRECTORY ${dir} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} FILES_MATCHING PATTERN "*.h")
  endforeach()
  uvchan__install_pc(${name} DESCRIPTION "${ARG_DESCRIPTION}" REQUIRES ${ARG_PC_REQUIRES})
endfunction()

# Writes <name>.pc at install time, because the prefix it names is only known then: `cmake
# --install build --prefix P` installs for P whatever CMAKE_INSTALL_PREFIX was at configure time.
function(uvchan__install_pc name)
  cmake_parse_arguments(ARG "" "DESCRIPTION" "REQUIRES" ${ARGN})
  foreach(kind LIBDIR INCLUDEDIR)
    if(IS_ABSOLUTE "${CMAKE_INSTALL_${kind}}")
      set(${kind} "${CMAKE_INSTALL_${kind}}")
    else()
      set(${kind} "\${prefix}/${CMAKE_INSTALL_${kind}}")
    endif()
  endforeach()
  string(REPLACE ";" ", " requires "${ARG_REQUIRES}")
  set(template "${PROJECT_BINARY_DIR}/pkgconfig/${name}.pc.in")
  set(pc "${PROJECT_BINARY_DIR}/pkgconfig/${name}.pc")
  file(WRITE "${template}" "\
prefix=@UVCHAN_PC_PREFIX@
exec_prefix=\${prefix}
libdir=${LIBDIR}
includedir=${INCLUDEDIR}

Name: ${name}
Description: ${ARG_DESCRIPTION}
Version: ${PROJECT_VERSION}
Requires: ${requires}
Libs: -L\${libdir} -l${name}
Cflags: -I\${includedir}
")
  install(CODE "
    file(READ \"${template}\" uvchan_pc)
    string(REPLACE \"@UVCHAN_PC_PREFIX@\" \"\${CMAKE_INSTALL_PREFIX}\" uvchan_pc \"\${uvchan_pc}\")
    file(WRITE \"${pc}\" \"\${uvchan_pc}\")")
  install(FILES "${pc}" DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endfunction()

# ------------------------------------------------------------------------------------------------
# The hook for optional modules (a module depends on a field library, e.g. uvchan_nats on
# libnats; it is built only when that library is found, and the core never depends on it):
#
# uvchan_add_module(<name>
#     SOURCES <file>...        its sources (src/<name>.c ...)
#     HEADERS <file>...        its public headers (include/uvchan_<name>.h), installed beside
#                              uvchan.h and documented by `make docs` like the core's
#     [DEPENDENCY <target>]    the field library's target, as this build found it
#     [DEPENDENCY_FILE <file>] CMake code that finds the field library and sets
#                              uvchan_<name>_DEPENDENCY to its target ("" if not found). Include
#                              it yourself to find the library for this build; it is installed
#                              too, and find_package(uvchan COMPONENTS <name>) includes it in the
#                              projects using the module (see cmake/UvchanLibuv.cmake for libuv)
#     [PC_REQUIRES <pc>...]    pkg-config modules the module needs besides uvchan ("libnats")
#     [DESCRIPTION <text>])
#
# It makes uvchan_<name>_shared and uvchan_<name>_static (each linking the core library of its
# kind, so a program never holds two copies of uvchan), the aliases uvchan_<name> (for this
# project's tests and examples), uvchan::uvchan_<name> and uvchan::uvchan_<name>_static, and
# installs them with their own export set, dependency file and uvchan_<name>.pc
# (Requires: uvchan = VERSION, PC_REQUIRES). For example, in the top-level CMakeLists.txt:
#
#   include(UvchanNatsDependency)              # cmake/UvchanNatsDependency.cmake: pkg-config libnats
#   if(uvchan_nats_DEPENDENCY)
#     uvchan_add_module(nats SOURCES src/nats.c HEADERS include/uvchan_nats.h
#       DEPENDENCY ${uvchan_nats_DEPENDENCY}
#       DEPENDENCY_FILE ${PROJECT_SOURCE_DIR}/cmake/UvchanNatsDependency.cmake
#       PC_REQUIRES libnats DESCRIPTION "NATS subjects as uvchan channels")
#   endif()
#
# and its users write find_package(uvchan CONFIG COMPONENTS nats) and link uvchan::uvchan_nats, or
# `pkg-config --cflags --libs uvchan_nats`.
function(uvchan_add_module name)
  cmake_parse_arguments(ARG "" "DEPENDENCY;DEPENDENCY_FILE;DESCRIPTION" "SOURCES;HEADERS;PC_REQUIRES"
                        ${ARGN})
  set(lib uvchan_${name})
  set(dep "")
  if(ARG_DEPENDENCY)
    set(dep DEPENDENCY ${ARG_DEPENDENCY} uvchan::${lib}_dependency)
  endif()
  uvchan_add_libraries(${lib} SOURCES ${ARG_SOURCES} LINK_PAIR uvchan ${dep} OUT_TARGETS targets)
  if(UVCHAN_INSTALL)
    uvchan_install_libraries(${lib} TARGETS ${targets} EXPORT ${lib}Targets
      HEADERS ${ARG_HEADERS} DESCRIPTION "${ARG_DESCRIPTION}"
      PC_REQUIRES "uvchan = ${PROJECT_VERSION}" ${ARG_PC_REQUIRES})
    if(ARG_DEPENDENCY_FILE)
      install(FILES ${ARG_DEPENDENCY_FILE} DESTINATION ${UVCHAN_INSTALL_CMAKEDIR}
              RENAME ${lib}Dependency.cmake)
    endif()
  endif()
endfunction()
