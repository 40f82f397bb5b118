// support.cpp — the conv drivers' shared helpers (support.h): scratch and workspace buffers, the
// direct kernels' plane geometry, channel-lane transposes and the channels-last unpack.
#include "support.h"

#include <cmath>
#include <limits>
#include <new>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastconv {
namespace cpu {

void poison(float* p, int64_t n) {
  if (debug_poison()) std::fill(p, p + n, std::numeric_limits<float>::quiet_NaN());
}

namespace {

// Cache-line-aligned storage for the scratch and workspace buffers. malloc aligns to 16 bytes
// only, so where a buffer started within its cache line depended on what the heap had handed out
// before: the packed GEMM's 64-byte loads of its B slivers (and the packing stores) then
// straddled two lines in some processes and none in others, and a pass's speed moved with the
// heap's history (keras.conv1 bwd_data: ~10% between two builds of the same code).
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) noexcept {}
  // Buffers of 512 KiB and more (the weight-gradient partial sums: keras.conv2's are 780 KB a
  // thread, re-read every image) go on 2 MiB-aligned transparent huge pages where the kernel
  // offers them: on 4 KiB pages their L2 conflict misses depended on which physical pages a
  // process drew (keras.conv2 bwd_weights ran 26 ms in some processes and 35-40 ms in others).
  static constexpr size_t kHuge = size_t(2) << 20;
  static bool huge(size_t n) { return n * sizeof(T) >= (size_t(512) << 10); }
  static size_t huge_bytes(size_t n) { return (n * sizeof(T) + kHuge - 1) / kHuge * kHuge; }
  T* allocate(size_t n) {
    if (!huge(n)) return static_cast<T*>(::operator new(n * sizeof(T), kAlign));
    void* p = ::operator new(huge_bytes(n), std::align_val_t{kHuge});
#ifdef MADV_HUGEPAGE
    madvise(p, huge_bytes(n), MADV_HUGEPAGE);  // advice only: 4 KiB pages where refused
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t n) noexcept {
    if (huge(n))
      ::operator delete(p, std::align_val_t{kHuge});
    else
      ::operator delete(p, kAlign);
  }
  friend bool operator==(const CacheLineAllocator&, const CacheLineAllocator&) { return true; }
  friend bool operator!=(const CacheLineAllocator&, const CacheLineAllocator&) { return false; }
};

using AlignedFloats = std::vector<float, CacheLineAllocator<float>>;

}  // namespace

float* scratch(int64_t n) {
  thread_local AlignedFloats buf;
  if (buf.size() < size_t(n)) buf.resize(size_t(n));
  poison(buf.data(), n);
  return buf.data();
}

float* caller_workspace(int64_t n) {
  thread_local AlignedFloats ws;
  if (ws.size() < size_t(n)) {
    ws = AlignedFloats();
    ws.resize(size_t(n));
  }
  return ws.data();
}

int64_t direct_channel_block(int64_t cout) {
  if (cout == 1) return 1;  // bwd_data of the C_in = 1 layers: one dx plane
  int64_t best = 6, best_pad = (cout + 5) / 6 * 6 - cout;
  for (int64_t cb = 5; cb >= 4; --cb) {
    const int64_t pad = (cout + cb - 1) / cb * cb - cout;
    if (pad < best_pad) best = cb, best_pad = pad;
  }
  return best;
}

DirectConvArgs direct_args(const Conv2dParams& p) {
  DirectConvArgs a{};
  a.cin = p.x.c;
  a.cout = p.y.c;
  a.kh = p.wt.h;
  a.kw = p.wt.w;
  a.hp = p.x.h + p.pad.top + p.pad.bottom;
  a.wp = p.x.w + p.pad.left + p.pad.right;
  a.plane = a.hp * a.wp;
  a.oh = p.y.h;
  a.ow = p.y.w;
  a.cb = direct_channel_block(a.cout);
  return a;
}

void sum_rows_into(float* out, const float* rows, int64_t nrows, int64_t len) {
  for (int64_t co = 0; co < nrows; ++co) {
    // 8 independent partial sums (vectorisable, fixed order), then combined in order.
    const float* r = rows + co * len;
    float s8[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= len; i += 8)
      for (int j = 0; j < 8; ++j) s8[j] += r[i + j];
    float s = 0.0f;
    for (; i < len; ++i) s += r[i];
    for (int j = 0; j < 8; ++j) s += s8[j];
    out[co] += s;
  }
}

void zero_lane_padding(float* dyT, int64_t P, int64_t C_out, int64_t coutp) {
  for (int64_t q = 0; q < P; ++q) std::fill(dyT + q * coutp + C_out, dyT + (q + 1) * coutp, 0.0f);
}

void transpose_to_lanes(float* dyT, const float* dy_n, int64_t C_out, int64_t P, int64_t coutp,
                        TransposeToLanesFn vec, int64_t lanes) {
  if (vec != nullptr && coutp >= round_up(C_out, lanes)) {
    vec(dyT, dy_n, C_out, P, coutp);
    return;
  }
  for (int64_t q0 = 0; q0 < P; q0 += 16) {  // 16-pixel strips: the 16 dyT rows stay in L1
    const int64_t q1 = std::min(P, q0 + 16);
    for (int64_t co = 0; co < C_out; ++co)
      for (int64_t q = q0; q < q1; ++q) dyT[q * coutp + co] = dy_n[co * P + q];
  }
}

void unpack_channels_last(float* y, const float* ycl, int64_t C, int64_t rows, int64_t W,
                          int64_t pitch, int64_t col0, int64_t lanes, const float* bias,
                          bool relu) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src_row = ycl + (r * pitch + col0) * lanes;
    for (int64_t x0 = 0; x0 < W; x0 += 64) {
      const int64_t x1 = std::min(W, x0 + 64);
      for (int64_t c = 0; c < C; ++c) {
        const float b = bias != nullptr ? bias[c] : 0.0f;
        float* yr = y + (c * rows + r) * W;
        const float* src = src_row + c;
        for (int64_t x = x0; x < x1; ++x) {
          const float v = src[x * lanes] + b;
          yr[x] = relu && v < 0.0f ? 0.0f : v;  // NaN stays NaN, as in every path
        }
      }
    }
  }
}

ClConvArgs padded_cl_args(const Conv2dParams& p, const KernelTable& kt, int64_t cin, int64_t cout,
                          int64_t h, int64_t w, int64_t top, int64_t left, int64_t bottom,
                          int64_t right) {
  ClConvArgs a{};
  a.cin = cin;
  a.coutp = round_up(cout, kt.lanes);
  a.kh = p.wt.h;
  a.kw = p.wt.w;
  a.top = top;
  a.left = left;
  a.h = h;
  a.w = w;
  a.wp = w + left + right;
  a.plane = (h + top + bottom) * a.wp;
  a.oh = h + top + bottom - a.kh + 1;
  a.ow = w + left + right - a.kw + 1;
  a.cov_max = 0;  // the kernel picks its tile
  return a;
}

}  // namespace cpu
}  // namespace fastconv
