// runtime.cpp — the CUDA runtime calls of cuda/*.cu for the CPU emulator (cuda_runtime.h):
// sticky-until-read launch errors, emulated devices (name, SM count), host-memory "device"
// allocations, copies and memsets (synchronous: every stream is the host thread).
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "cuda_runtime.h"

namespace emu {
namespace {

std::mutex g_mutex;
cudaError_t g_last_error = cudaSuccess;
std::string g_last_why;
// Process-wide, not per thread: this library's thread_local storage is the blocks' __shared__
// memory, poisoned at every block start (simt.h).
int g_device = 0;
// The emulated devices' SM counts (split plans depend on them): an H100's, and a small GPU's.
const std::vector<int> g_device_sms = {132, 4};
std::vector<LaunchRecord> g_launches;
std::map<const void*, size_t> g_max_dynamic_shared;  // kernels whose limit was raised

}  // namespace

void set_launch_error(cudaError_t err, const std::string& why) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_last_error = err;
  g_last_why = why;
}

const std::string& last_launch_error() { return g_last_why; }

void record_launch(const LaunchRecord& r) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_launches.push_back(r);
}

size_t max_dynamic_shared(const void* kernel) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const auto it = g_max_dynamic_shared.find(kernel);
  return it != g_max_dynamic_shared.end() ? it->second : 48 * 1024;
}

std::vector<LaunchRecord> take_launches() {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::vector<LaunchRecord> out;
  out.swap(g_launches);
  return out;
}

}  // namespace emu

cudaError_t cudaPeekAtLastError() {
  std::lock_guard<std::mutex> lock(emu::g_mutex);
  return emu::g_last_error;
}

cudaError_t cudaGetLastError() {
  std::lock_guard<std::mutex> lock(emu::g_mutex);
  const cudaError_t err = emu::g_last_error;
  emu::g_last_error = cudaSuccess;
  return err;
}

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument (emulator)";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorLaunchFailure: return "unspecified launch failure (emulator: barrier error)";
  }
  return "unknown error";
}

cudaError_t cudaGetDeviceCount(int* count) {
  std::lock_guard<std::mutex> lock(emu::g_mutex);
  *count = int(emu::g_device_sms.size());
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  std::lock_guard<std::mutex> lock(emu::g_mutex);
  *device = emu::g_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  int n = 0;
  cudaGetDeviceCount(&n);
  if (device < 0 || device >= n) return cudaErrorInvalidDevice;
  std::lock_guard<std::mutex> lock(emu::g_mutex);
  emu::g_device = device;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  std::lock_guard<std::mutex> lock(emu::g_mutex);
  if (device < 0 || device >= int(emu::g_device_sms.size())) return cudaErrorInvalidDevice;
  if (attr != cudaDevAttrMultiProcessorCount) return cudaErrorInvalidValue;
  *value = emu::g_device_sms[device];
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  int sms = 0;
  const cudaError_t err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  if (err != cudaSuccess) return err;
  std::memset(prop, 0, sizeof *prop);
  std::strncpy(prop->name, "fastconv CPU emulator", sizeof prop->name - 1);
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = sms;
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attr, int value) {
  // sm_90 allows up to 227 KB per block, opted in per kernel.
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || value > 227 * 1024)
    return cudaErrorInvalidValue;
  std::lock_guard<std::mutex> lock(emu::g_mutex);
  emu::g_max_dynamic_shared[kernel] = size_t(value);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaPeekAtLastError(); }
cudaError_t cudaDeviceSynchronize() { return cudaPeekAtLastError(); }

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  *ptr = std::malloc(bytes > 0 ? bytes : 1);
  return *ptr != nullptr ? cudaSuccess : cudaErrorMemoryAllocation;
}

cudaError_t cudaFree(void* ptr) {
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (bytes > 0) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  if (bytes > 0) std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t) {
  return cudaMemset(ptr, value, bytes);
}
