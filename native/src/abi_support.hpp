// ABI v1 (normconf_bn.h) helpers for the tiny-dnn shim: argument validation of a
// normconf_bn_call, per-channel copies; the error machinery is in abi_common.hpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <exception>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "abi_common.hpp"
#include "normconf/batch_norm.hpp"
#include "normconf_bn.h"

namespace normconf::abi {

static_assert(NORMCONF_BN_OK == kOk && NORMCONF_BN_EINVAL == kEinval && NORMCONF_BN_EUNSUPPORTED == kEunsupported &&
                  NORMCONF_BN_EINTERNAL == kEinternal,
              "ABI v1 return codes");

/// Validated view of a call: dims as a vector, element counts.
struct Shape {
    std::vector<std::int64_t> dims;
    std::int64_t n = 0, c = 0, spatial = 1, size = 0;
};

/// Checks everything that does not depend on the implementation; throws CallError(EINVAL).
inline Shape validate(const normconf_bn_call* call) {
    auto bad = [](const std::string& m) { return CallError(NORMCONF_BN_EINVAL, m); };
    if (call == nullptr) throw bad("call is NULL");
    if (call->struct_size < sizeof(normconf_bn_call))
        throw bad("struct_size " + std::to_string(call->struct_size) + " < sizeof(normconf_bn_call) = " +
                  std::to_string(sizeof(normconf_bn_call)) + " (caller built against an older ABI?)");
    if (call->dtype != NORMCONF_BN_FLOAT32 && call->dtype != NORMCONF_BN_FLOAT64)
        throw bad("unknown dtype code " + std::to_string(call->dtype));
    if (call->mode != NORMCONF_BN_TRAIN && call->mode != NORMCONF_BN_EVAL)
        throw bad("unknown mode code " + std::to_string(call->mode));
    if (call->rank < 2 || call->rank > 5) throw bad("rank must be 2..5, got " + std::to_string(call->rank));
    Shape s;
    s.dims.assign(call->dims, call->dims + call->rank);
    if (s.dims[0] < 0) throw bad("N must be >= 0, got " + std::to_string(s.dims[0]));
    for (int i = 1; i < call->rank; ++i)
        if (s.dims[i] <= 0) throw bad("dims[" + std::to_string(i) + "] must be > 0, got " + std::to_string(s.dims[i]));
    for (int i = call->rank; i < 5; ++i)
        if (call->dims[i] != 0) throw bad("dims[" + std::to_string(i) + "] must be 0 beyond rank");
    const std::int64_t limit = std::int64_t(1) << 50;
    s.n = s.dims[0];
    s.c = s.dims[1];
    for (int i = 2; i < call->rank; ++i) {
        s.spatial *= s.dims[i];
        if (s.spatial > limit) throw bad("spatial size too large");
    }
    if (s.c > limit / s.spatial || (s.n > 0 && s.n > limit / (s.c * s.spatial))) throw bad("x too large");
    s.size = s.n * s.c * s.spatial;
    if (call->x_len != s.size)
        throw bad("x_len " + std::to_string(call->x_len) + " != product of dims " + std::to_string(s.size));
    if (!(std::isfinite(call->eps) && call->eps > 0)) throw bad("eps must be finite and > 0");
    if (call->mode == NORMCONF_BN_TRAIN) {
        if (call->cumulative != 0 && call->cumulative != 1) throw bad("cumulative must be 0 or 1");
        if (!call->cumulative && !(call->momentum >= 0.0 && call->momentum <= 1.0))
            throw bad("momentum (batch weight) must be in [0, 1]");
        if (call->step < 1) throw bad("step must be >= 1");
    }
    if (s.size > 0 && (call->x == nullptr || call->y == nullptr)) throw bad("x and y must not be NULL");
    if (call->running_mean == nullptr || call->running_var == nullptr)
        throw bad("running_mean and running_var must not be NULL");
    return s;
}

template <typename T>
std::vector<T> per_channel(const void* p, std::int64_t c) {
    const T* t = static_cast<const T*>(p);
    return std::vector<T>(t, t + c);
}

template <typename Vec>
void store(void* dst, const Vec& v) {
    using T = typename Vec::value_type;
    T* t = static_cast<T*>(dst);
    for (std::size_t i = 0; i < v.size(); ++i) t[i] = v[i];
}

}  // namespace normconf::abi
