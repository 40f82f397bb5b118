// registry.h — the one place that chooses a CPU conv algorithm. For each pass an ordered list of
// {name, usable, preferred, driver} (registry.cpp); the entries in entries.cpp run
//   the forced algorithm (set_conv_algorithm) if any: ValueError if it is not usable on this call,
//   else the first entry that is usable (its kernels exist on the ISA, its geometry holds) and
//   preferred (the measured heuristic, next to the entry).
// The fused conv + ReLU + pool ops use the same lists: a driver writes through an ImageSink and
// reads dy through a DySource, plain or pooled.
#pragma once

#include <string>
#include <vector>

#include "drivers.h"

namespace fastconv {
namespace cpu {

enum class ConvPass { fwd, bwd_data, bwd_weights };

// Run-time switches the heuristics read (set_winograd).
struct AlgoConfig {
  bool winograd = true;  // false: the Winograd entries are never preferred (still forceable)
};

template <class Driver>
struct ConvAlgorithm {
  const char* name;
  const char* needs;  // the usable() condition in words, for the not-applicable error
  bool (*usable)(const Conv2dParams& p, const KernelTable& kt);
  bool (*preferred)(const Conv2dParams& p, const KernelTable& kt, const AlgoConfig& cfg);
  Driver run;
};

const ConvAlgorithm<FwdDriver>& choose_fwd(const Conv2dParams& p, const KernelTable& kt);
const ConvAlgorithm<BwdDataDriver>& choose_bwd_data(const Conv2dParams& p, const KernelTable& kt);
const ConvAlgorithm<BwdWeightsDriver>& choose_bwd_weights(const Conv2dParams& p,
                                                          const KernelTable& kt);

}  // namespace cpu
}  // namespace fastconv
