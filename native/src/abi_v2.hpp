// ABI v2 (normconf.h) helpers for the bundled `cpp` backend: the checks every op shares,
// and element access for the four element types (float16/bfloat16 as uint16_t storage).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "abi_common.hpp"
#include "normconf.h"
#include "normconf/half.hpp"

namespace normconf::abi {

static_assert(NORMCONF_OK == kOk && NORMCONF_EINVAL == kEinval && NORMCONF_EUNSUPPORTED == kEunsupported &&
                  NORMCONF_EINTERNAL == kEinternal,
              "ABI v2 return codes");
static_assert(sizeof(void*) != 8 || sizeof(normconf_call) == 328, "normconf_call layout (normconf.h) changed");

inline CallError invalid(const std::string& m) { return CallError(NORMCONF_EINVAL, m); }
inline CallError unsupported(const std::string& m) { return CallError(NORMCONF_EUNSUPPORTED, m); }

inline const char* op_name(int32_t op) {
    switch (op) {
        case NORMCONF_OP_BATCH_NORM: return "batch_norm";
        case NORMCONF_OP_LAYER_NORM: return "layer_norm";
        case NORMCONF_OP_GROUP_NORM: return "group_norm";
        case NORMCONF_OP_INSTANCE_NORM: return "instance_norm";
        case NORMCONF_OP_RMS_NORM: return "rms_norm";
        default: return nullptr;
    }
}

inline bool known_dtype(int32_t code) { return code >= NORMCONF_FLOAT32 && code <= NORMCONF_BFLOAT16; }

/// Checks what does not depend on the op; returns dims[0..rank).  Throws CallError
/// (EINVAL for malformed requests, EUNSUPPORTED for the backward direction and flag bits).
inline std::vector<std::int64_t> validate_common(const normconf_call* call) {
    if (call == nullptr) throw invalid("call is NULL");
    if (call->struct_size < sizeof(normconf_call))
        throw invalid("struct_size " + std::to_string(call->struct_size) + " < sizeof(normconf_call) = " +
                      std::to_string(sizeof(normconf_call)) + " (caller built against an older ABI?)");
    if (call->abi_version != NORMCONF_ABI_VERSION)
        throw invalid("abi_version " + std::to_string(call->abi_version) + ": this library implements ABI version " +
                      std::to_string(NORMCONF_ABI_VERSION));
    if (op_name(call->op) == nullptr) throw invalid("unknown op code " + std::to_string(call->op));
    if (call->direction != NORMCONF_FORWARD && call->direction != NORMCONF_BACKWARD)
        throw invalid("unknown direction code " + std::to_string(call->direction));
    if (!known_dtype(call->dtype)) throw invalid("unknown dtype code " + std::to_string(call->dtype));
    if (!known_dtype(call->param_dtype)) throw invalid("unknown param_dtype code " + std::to_string(call->param_dtype));
    if (call->rank < 1 || call->rank > NORMCONF_MAX_RANK)
        throw invalid("rank must be 1..8, got " + std::to_string(call->rank));
    std::vector<std::int64_t> dims(call->dims, call->dims + call->rank);
    const std::int64_t limit = std::int64_t(1) << 50;
    std::int64_t size = 1;
    for (int i = 0; i < call->rank; ++i) {
        if (dims[i] < 0) throw invalid("dims[" + std::to_string(i) + "] must be >= 0, got " + std::to_string(dims[i]));
        if (dims[i] > limit || (dims[i] > 0 && size > limit / dims[i])) throw invalid("x too large");
        size *= dims[i];
    }
    for (int i = call->rank; i < NORMCONF_MAX_RANK; ++i)
        if (call->dims[i] != 0) throw invalid("dims[" + std::to_string(i) + "] must be 0 beyond rank");
    if (call->x_len != size)
        throw invalid("x_len " + std::to_string(call->x_len) + " != product of dims " + std::to_string(size));
    if (!(std::isfinite(call->eps) && call->eps > 0)) throw invalid("eps must be finite and > 0");
    if (size > 0 && (call->x == nullptr || call->y == nullptr)) throw invalid("x and y must not be NULL");
    if (call->direction == NORMCONF_BACKWARD)
        throw unsupported(std::string(op_name(call->op)) + ": gradients (direction NORMCONF_BACKWARD) are not implemented");
    if (call->flags != 0) throw unsupported("unknown flag bits " + std::to_string(call->flags));
    return dims;
}

/// n elements of type code `code` at p, as T (exact widening; T = float only reads float32).
template <typename T>
std::vector<T> read(const void* p, int32_t code, std::size_t n) {
    std::vector<T> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        switch (code) {
            case NORMCONF_FLOAT32: out[i] = static_cast<T>(static_cast<const float*>(p)[i]); break;
            case NORMCONF_FLOAT64: out[i] = static_cast<T>(static_cast<const double*>(p)[i]); break;
            case NORMCONF_FLOAT16:
                out[i] = static_cast<T>(half::Float16::to_double(static_cast<const std::uint16_t*>(p)[i]));
                break;
            default: out[i] = static_cast<T>(half::BFloat16::to_double(static_cast<const std::uint16_t*>(p)[i]));
        }
    }
    return out;
}

/// Stores v at p as type code `code`, rounding once to nearest-even.
template <typename T>
void write(void* p, int32_t code, const std::vector<T>& v) {
    for (std::size_t i = 0; i < v.size(); ++i) {
        switch (code) {
            case NORMCONF_FLOAT32: static_cast<float*>(p)[i] = static_cast<float>(v[i]); break;
            case NORMCONF_FLOAT64: static_cast<double*>(p)[i] = static_cast<double>(v[i]); break;
            case NORMCONF_FLOAT16:
                static_cast<std::uint16_t*>(p)[i] = half::Float16::from_double(static_cast<double>(v[i]));
                break;
            default: static_cast<std::uint16_t*>(p)[i] = half::BFloat16::from_double(static_cast<double>(v[i]));
        }
    }
}

}  // namespace normconf::abi
