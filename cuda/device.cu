// device.cu — error reporting, device queries and the conv-algorithm switch shared by the CUDA
// entries (see common.cuh, ops_cuda.h).
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "common.cuh"
#include "fastconv/config.h"
#include "fastconv/ops_cuda.h"

namespace fastconv {
namespace gpu {
namespace {

bool sync_after_launch() {
  static const bool on = env_flag("FASTCONV_CUDA_SYNC");
  return on;
}

std::atomic<int> g_algo[3] = {{0}, {0}, {0}};  // per ConvPass, ConvAlgo::Auto

}  // namespace

void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  throw CudaError(str_cat("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
                          ") in ", what, " at ", file, ":", line));
}

void check_launch(const char* kernel, cudaStream_t stream, const char* file, int line) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess && sync_after_launch()) err = cudaStreamSynchronize(stream);
  if (err != cudaSuccess) {
    throw CudaError(str_cat("CUDA error ", cudaGetErrorName(err), " (", cudaGetErrorString(err),
                            ") launching ", kernel, " at ", file, ":", line));
  }
}

int sm_count() {
  static std::mutex mu;
  static std::vector<int> cache;
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  if (dev >= int(cache.size())) cache.resize(dev + 1, 0);
  if (cache[dev] == 0) {
    CUDA_CHECK(cudaDeviceGetAttribute(&cache[dev], cudaDevAttrMultiProcessorCount, dev));
  }
  return cache[dev];
}

void set_conv_algo(ConvPass pass, ConvAlgo algo) {
  g_algo[static_cast<int>(pass)].store(static_cast<int>(algo));
}
ConvAlgo conv_algo(ConvPass pass) {
  return static_cast<ConvAlgo>(g_algo[static_cast<int>(pass)].load());
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  int n = 0;
  CUDA_CHECK(cudaGetDeviceCount(&n));
  FC_CHECK(device >= 0 && device < n, "CUDA device ", device, " does not exist (", n,
           " device(s) visible)");
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return str_cat(prop.name, " (sm_", prop.major, prop.minor, ", ", prop.multiProcessorCount,
                 " SMs)");
}

// Every entry calls this before its launches; the device is nearly always current already, and
// cudaGetDevice reads a thread-local where cudaSetDevice goes through the driver's context switch.
void set_device(int device) {
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess) {
    cudaGetLastError();  // not left behind for the next launch check; cudaSetDevice reports it
  } else if (current == device) {
    return;
  }
  CUDA_CHECK(cudaSetDevice(device));
}

void synchronize(cudaStream_t stream) { CUDA_CHECK(cudaStreamSynchronize(stream)); }

int runtime_version() { return CUDART_VERSION; }

}  // namespace gpu
}  // namespace fastconv
