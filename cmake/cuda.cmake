# cuda.cmake — the optional CUDA extension (filled in by the CUDA work). With FASTCONV_CUDA=OFF,
# or AUTO without a toolkit, nothing here runs and the package is CPU-only.
if(FASTCONV_CUDA STREQUAL "OFF")
  list(APPEND FASTCONV_SUMMARY "CUDA: off (FASTCONV_CUDA=OFF)")
  return()
endif()
list(APPEND FASTCONV_SUMMARY "CUDA: not yet built")
