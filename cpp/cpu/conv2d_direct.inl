// conv2d_direct.inl — direct convolution (no im2col), stride 1, dilation 1, one image at a time
// (forward for every C_in, also serving bwd_data; bwd_weights per-lane for C_in < 4 and
// channels-in-lanes above), written against the SIMD interface of avx2/simd__avx2.h and
// avx512/simd__avx512.h. Include INSIDE the anonymous namespace of an ISA translation unit.
//
// Why: with C_in = 1 the GEMM's reduction is only KH*KW = 9..25 long, so im2col + packing moves
// more bytes than the multiply-adds are worth. Here the input is read straight from a zero-padded
// copy of the image (padding then costs no branches) and the output is register-tiled.
//
// Forward tile: R output rows x NV vectors of output columns x CB output channels accumulators.
// Input row r of the tile's (R + KH - 1)-row window is loaded once per kx and feeds every output
// row i of the tile with ky = r - i in range, so each loaded vector serves up to min(R, KH) rows x
// CB channels; weights are broadcast from memory. Lanes past OW compute junk that is never stored.
// Bwd-weights tile: CB output channels x T taps of per-lane partial sums, streaming the image's
// dy planes and shifted copies of its input as flat runs (see bwd_weights); each loaded input
// vector is shared by CB channels and each dy vector by T taps. Partial sums stay in lanes (the
// caller sums them in a fixed order at the end) so the result does not depend on the ISA's shuffles.
//
// The kernels live in one file per pass; DirectConv gathers them under the name the ISA
// translation units instantiate (one template argument list per ISA):
//   conv2d_direct_fwd.inl           forward tiles (also bwd_data) and shift_planes
//   conv2d_direct_bwd_weights.inl   weight-gradient tiles

#include "conv2d_direct_fwd.inl"
#include "conv2d_direct_bwd_weights.inl"

template <class V, int R_WIDE, int R_NARROW, int BWD_REGS, int NQ_MAX, int COV_MAX>
struct DirectConv : DirectConvFwd<V, R_WIDE, R_NARROW, BWD_REGS, NQ_MAX>,
                    DirectConvBwdWeights<V, BWD_REGS, COV_MAX> {};
