# Builds platform/engine as a project of its own (as on a machine with a compiler, PCRE2 and utf8proc), into
# BINARY_DIR: the engine must not reach for the platform's other libraries.
#   cmake -DSOURCE_DIR=<repo>/platform/engine -DBINARY_DIR=<dir> -P standalone_build.cmake
file(REMOVE_RECURSE "${BINARY_DIR}")
set(launcher "")
find_program(CCACHE ccache)
if(CCACHE)
  set(launcher "-DCMAKE_CXX_COMPILER_LAUNCHER=${CCACHE}")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BINARY_DIR}" -G Ninja
                        ${launcher}
                RESULT_VARIABLE configured)
if(NOT configured EQUAL 0)
  message(FATAL_ERROR "configuring the engine on its own failed")
endif()
execute_process(COMMAND "${CMAKE_COMMAND}" --build "${BINARY_DIR}" RESULT_VARIABLE built)
if(NOT built EQUAL 0)
  message(FATAL_ERROR "building the engine on its own failed")
endif()
