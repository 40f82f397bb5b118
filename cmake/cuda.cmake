# cuda.cmake — the optional CUDA extension, included by CMakeLists.txt after _C and fastconv_core.
#
# FASTCONV_CUDA (pyproject fills it from the environment, default AUTO):
#   OFF   CPU-only; nothing below runs.
#   ON    CUDA is required: no usable toolkit, or a probe build that fails, is a configure error.
#   AUTO  CUDA when a toolkit is found AND the probe project below builds; otherwise CPU-only, with a
#         status line saying why. The install never fails because of CUDA in AUTO mode for the
#         reasons the probe covers.
# What the AUTO probe catches (cmake/cuda_probe: a nested cmake configure + build at configure time,
# ~10-20 s on 2 cores):
#   no nvcc / no CUDA toolkit; an nvcc that rejects the host compiler (unsupported gcc/clang
#   version); an architecture list this nvcc cannot target; a missing static runtime
#   (libcudart_static.a); fastconv's shared headers (params.h, error.h, cuda/common.cuh) not
#   compiling under nvcc + C++17; a static-cudart shared object that does not link.
# What it does not catch: a compile error inside cuda/*.cu itself (that is a bug in fastconv, caught
#   by CI's forced-ON build, .ci/cuda_build), or running out of memory/time while compiling them.
#
# Architectures: CMAKE_CUDA_ARCHITECTURES (a -C cmake.define, or the CUDAARCHS environment variable
# CMake reads) wins; the default is an explicit list, never "native" (no GPU at build time):
#   80-real 86-real 89-real 90-real  SASS for A100, RTX 30xx/A10/A40, L4/RTX 40xx, H100/H200
#   90-virtual                       compute_90 PTX, JIT-compiled by the driver on newer GPUs
# The CUDA runtime is linked statically (CUDA::cudart_static): the module needs only the driver.
if(FASTCONV_CUDA STREQUAL "OFF")
  message(STATUS "fastconv: building without CUDA (FASTCONV_CUDA=OFF)")
  list(APPEND FASTCONV_SUMMARY "CUDA: no (FASTCONV_CUDA=OFF)")
  return()
endif()
if(NOT FASTCONV_CUDA MATCHES "^(AUTO|ON)$")
  message(FATAL_ERROR "FASTCONV_CUDA must be AUTO, ON or OFF, got '${FASTCONV_CUDA}'")
endif()

# Report "no CUDA" (AUTO) or stop (ON).
function(_fastconv_no_cuda why)
  if(FASTCONV_CUDA STREQUAL "ON")
    message(FATAL_ERROR "fastconv: FASTCONV_CUDA=ON but ${why}")
  endif()
  message(STATUS "fastconv: building without CUDA (FASTCONV_CUDA=AUTO: ${why})")
  set(FASTCONV_SUMMARY ${FASTCONV_SUMMARY} "CUDA: no (${why})" PARENT_SCOPE)
endfunction()

include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  _fastconv_no_cuda("no CUDA compiler found (put nvcc on PATH or set CUDACXX)")
  return()
endif()

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND "$ENV{CUDAARCHS}" STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES "80-real;86-real;89-real;90-real;90-virtual")
endif()
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_RUNTIME_LIBRARY Static)

# AUTO: build the probe project before enabling CUDA in this project, so a broken toolchain leaves
# a clean CPU-only configure behind. ON skips the probe: the real build reports the real error.
if(FASTCONV_CUDA STREQUAL "AUTO")
  set(_probe_archs "${CMAKE_CUDA_ARCHITECTURES}")
  if(_probe_archs STREQUAL "")
    set(_probe_archs "$ENV{CUDAARCHS}")
  endif()
  # A nested cmake configure + build (try_compile's project form refuses a language the parent
  # has not enabled yet, and enabling CUDA here first would make a broken toolchain fatal).
  set(_probe_dir "${CMAKE_CURRENT_BINARY_DIR}/cuda_probe")
  file(REMOVE_RECURSE "${_probe_dir}")
  execute_process(
    COMMAND "${CMAKE_COMMAND}" -S "${CMAKE_CURRENT_SOURCE_DIR}/cmake/cuda_probe" -B "${_probe_dir}"
            -G "${CMAKE_GENERATOR}"
            "-DCMAKE_CUDA_COMPILER=${CMAKE_CUDA_COMPILER}"
            "-DCMAKE_CUDA_HOST_COMPILER=${CMAKE_CUDA_HOST_COMPILER}"
            "-DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}"
            "-DCMAKE_CUDA_ARCHITECTURES=${_probe_archs}"
            "-DCMAKE_BUILD_TYPE=Release"
            "-DFASTCONV_SOURCE_DIR=${CMAKE_CURRENT_SOURCE_DIR}"
    RESULT_VARIABLE _probe_rc OUTPUT_VARIABLE _probe_log ERROR_VARIABLE _probe_log)
  if(_probe_rc EQUAL 0)
    execute_process(COMMAND "${CMAKE_COMMAND}" --build "${_probe_dir}"
                    RESULT_VARIABLE _probe_rc OUTPUT_VARIABLE _probe_build_log ERROR_VARIABLE _probe_build_log)
    string(APPEND _probe_log "${_probe_build_log}")
  endif()
  if(_probe_rc EQUAL 0)
    set(_fastconv_cuda_ok TRUE)
  else()
    set(_fastconv_cuda_ok FALSE)
  endif()
  if(NOT _fastconv_cuda_ok)
    file(WRITE "${CMAKE_CURRENT_BINARY_DIR}/cuda_probe.log" "${_probe_log}")
    _fastconv_no_cuda("the CUDA probe build failed with ${CMAKE_CUDA_COMPILER} for architectures '${_probe_archs}'; log: ${CMAKE_CURRENT_BINARY_DIR}/cuda_probe.log")
    return()
  endif()
endif()

enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
if(NOT TARGET CUDA::cudart_static)
  _fastconv_no_cuda("the CUDA toolkit has no static runtime (CUDA::cudart_static)")
  return()
endif()

# Kernels and launchers: plain CUDA C++, no pybind11 (bindings live in cpp/bindings_cuda.cpp).
add_library(fastconv_cuda STATIC
  cuda/device.cu
  cuda/conv2d.cu
  cuda/maxpool2d.cu
  cuda/train_step.cu)
target_include_directories(fastconv_cuda PRIVATE cuda)
# The Adam step shares its formula with adam_cpu.cpp (-ffp-contract=off): no FMA contraction here
# either, so the GPU rounds each operation as the CPU does.
set_source_files_properties(cuda/train_step.cu PROPERTIES COMPILE_OPTIONS --fmad=false)
target_link_libraries(fastconv_cuda PUBLIC fastconv_core CUDA::cudart_static)
set_target_properties(fastconv_cuda PROPERTIES
  CUDA_RUNTIME_LIBRARY Static
  CUDA_SEPARABLE_COMPILATION OFF
  POSITION_INDEPENDENT_CODE ON)
# No --use_fast_math: max-pool's NaN rule and the float32 error budget of the tests rely on IEEE
# behaviour. -lineinfo costs nothing at run time and lets compute-sanitizer name source lines.
target_compile_options(fastconv_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 -lineinfo --expt-relaxed-constexpr -Xptxas=-warn-spills>)

target_sources(_C PRIVATE cpp/bindings_cuda.cpp)
target_link_libraries(_C PRIVATE fastconv_cuda)
target_compile_definitions(_C PRIVATE FASTCONV_WITH_CUDA)

string(REPLACE ";" " " _archs_str "${CMAKE_CUDA_ARCHITECTURES}")
message(STATUS "fastconv: building with CUDA ${CMAKE_CUDA_COMPILER_VERSION} (FASTCONV_CUDA=${FASTCONV_CUDA}), architectures: ${_archs_str}, static cudart")
list(APPEND FASTCONV_SUMMARY "CUDA: yes (${CMAKE_CUDA_COMPILER_VERSION}; ${_archs_str})")
