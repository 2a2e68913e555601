# Compiler settings shared by every target: warnings, sanitizers, ccache.

find_program(MACROHARD_CCACHE ccache)
if(MACROHARD_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_C_COMPILER_LAUNCHER "${MACROHARD_CCACHE}")
  set(CMAKE_CXX_COMPILER_LAUNCHER "${MACROHARD_CCACHE}")
  set(CMAKE_CUDA_COMPILER_LAUNCHER "${MACROHARD_CCACHE}")
endif()

add_library(macrohard_warnings INTERFACE)
target_compile_options(macrohard_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX,C>:-Wall -Wextra -Wpedantic>
  $<$<AND:$<COMPILE_LANGUAGE:CXX,C>,$<BOOL:${MACROHARD_WERROR}>>:-Werror>
  # GCC 12 reports std::variant<..., std::string> members as maybe-uninitialized at -O2
  # (GCC bug 105562 and relatives); the diagnostic is noise there.
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-maybe-uninitialized>)

if(MACROHARD_SANITIZE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX,C>:-fsanitize=address,undefined>
                      $<$<COMPILE_LANGUAGE:CXX,C>:-fno-omit-frame-pointer>
                      $<$<COMPILE_LANGUAGE:CXX,C>:-fno-sanitize-recover=undefined>)
  add_link_options(-fsanitize=address,undefined)
endif()

# Asio and Beast are compiled once per binary (see platform/base/asio_impl.cpp) instead of in
# every translation unit that includes them: much faster builds on small machines.
set(MACROHARD_ASIO_DEFINITIONS BOOST_ASIO_SEPARATE_COMPILATION BOOST_BEAST_SEPARATE_COMPILATION
    BOOST_ASIO_NO_DEPRECATED BOOST_BEAST_USE_STD_STRING_VIEW)
