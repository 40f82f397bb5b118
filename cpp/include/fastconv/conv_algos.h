// conv_algos.h — which CPU conv algorithm runs, asked and forced by name (the registry lives in
// cpp/cpu/conv2d/registry.cpp). Pass names: "fwd", "bwd_data", "bwd_weights"; the fused conv +
// ReLU + pool ops follow the same choice as the plain passes.
#pragma once

#include <string>
#include <vector>

#include "fastconv/params.h"

namespace fastconv {
namespace cpu {

// Every algorithm registered for the pass, in the order the registry tries them.
std::vector<std::string> conv_algorithms(const std::string& pass);
// Those that can run this problem on the current ISA (forcing any of them is valid), in order.
std::vector<std::string> usable_conv_algorithms(const std::string& pass, const Conv2dParams& p);
// The one a call would run now (the forced one if set; ValueError if that one cannot run it).
std::string chosen_conv_algorithm(const std::string& pass, const Conv2dParams& p);
// Force `name` for every later call of the pass ("" : the automatic choice again). ValueError for
// an unknown pass or name; a name that cannot run a given call fails that call.
void set_conv_algorithm(const std::string& pass, const std::string& name);
std::string forced_conv_algorithm(const std::string& pass);  // "" when automatic
// Whether the automatic choice may take a Winograd algorithm (fastconv.set_winograd).
void set_winograd_allowed(bool on);
bool winograd_allowed();

}  // namespace cpu
}  // namespace fastconv
