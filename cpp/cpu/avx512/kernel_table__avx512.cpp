// kernel_table__avx512.cpp — the AVX-512 path's kernel table, filled by field name (the kernels
// live in sgemm__avx512.cpp and conv_pool__avx512.cpp).
#include "fastconv/cpu_kernels.h"

namespace fastconv {
namespace cpu {

const KernelTable& kernel_table__avx512() {
  static const KernelTable table = [] {
    KernelTable t;
    t.isa = "avx512";
    t.lanes = 16;
    t.gemm.run = sgemm__avx512;
    t.gemm.packed = sgemm_packed__avx512;
    t.gemm.mr = 8;
    t.gemm.nr = 32;
    t.pool.fwd_2x2s2 = maxpool2d_fwd_2x2s2__avx512;
    t.pool.bwd_2x2s2 = maxpool2d_bwd_2x2s2__avx512;
    t.pool.relu_codes_2x2s2 = maxpool2d_codes_2x2s2__avx512;
    t.pool.relu_unpool_2x2s2 = unpool2d_codes_2x2s2__avx512;
    t.pool.bwd_2x2s2_min_ow = 4;
    t.direct.fwd = conv2d_fwd_direct__avx512;
    t.direct.fwd_shifted = conv2d_fwd_direct_shifted__avx512;
    t.direct.shift_planes = shift_planes__avx512;
    t.direct.bwd_weights = conv2d_bwd_weights_direct__avx512;
    t.channel_lanes.fwd = conv2d_fwd_cl__avx512;
    t.channel_lanes.bwd_data_scatter = conv2d_bwd_data_scatter__avx512;
    t.channel_lanes.bwd_data_dy_lanes = conv2d_bwd_data_dylanes__avx512;
    t.channel_lanes.bwd_weights = conv2d_bwd_weights_direct_t__avx512;
    t.channel_lanes.bwd_weights_taps = conv2d_bwd_weights_direct_cl__avx512;
    t.channel_lanes.bwd_weights_rows = conv2d_bwd_weights_rows__avx512;
    t.channel_lanes.bwd_weights_rows3 = conv2d_bwd_weights_rows3__avx512;
    t.channel_lanes.transpose = transpose_to_lanes__avx512;
    t.channel_lanes.pad_channels_last = pad_channels_last__avx512;
    t.winograd.fwd_channels = conv2d_fwd_winograd__avx512;
    t.winograd.fwd_tiles = conv2d_fwd_winograd_tiles__avx512;
    t.winograd.fwd_tiles_4x2 = conv2d_fwd_winograd_tiles_4x2__avx512;
    t.winograd.fwd_one_plane = conv2d_fwd_winograd_one_plane__avx512;
    t.winograd.bwd_data_transposed = conv2d_bwd_data_winograd__avx512;
    t.winograd.bwd_weights = conv2d_bwd_weights_winograd__avx512;
    t.winograd.fwd_rows = conv2d_fwd_winograd_rows__avx512;
    t.winograd.bwd_data_image_lanes = conv2d_bwd_data_image_lanes__avx512;  // 8-lane vectors
    t.winograd.bwd_data_image_lanes_work = conv2d_bwd_data_image_lanes_work__avx512;
    t.winograd.image_lanes_group = 8;
    return t;
  }();
  return table;
}

}  // namespace cpu
}  // namespace fastconv
