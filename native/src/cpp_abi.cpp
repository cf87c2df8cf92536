// The C ABI v2 (normconf.h) over normconf::BatchNorm and normconf::LayerNorm: backend `cpp`.
//
// Element types: when x and every parameter array are float32 the classes run with
// T = float (as the v1 library did); every other combination (float64, float16,
// bfloat16, a param_dtype different from dtype) runs with T = double on exact widened
// copies, and each result is rounded once to its storage type (round-to-nearest-even).
// Both classes accumulate in double and round y once, so the two paths agree bit for bit.
#include "abi_v2.hpp"
#include "normconf/batch_norm.hpp"
#include "normconf/layer_norm.hpp"

namespace {

using namespace normconf::abi;

void check_batch_norm(const normconf_call* call, const std::vector<std::int64_t>& dims) {
    if (call->rank < 2) throw invalid("batch_norm: rank must be 2..8 (N, C, spatial...), got " + std::to_string(call->rank));
    if (call->rank > 5)
        throw unsupported("batch_norm: normconf::BatchNorm handles ranks 2..5, got " + std::to_string(call->rank));
    for (int i = 1; i < call->rank; ++i)
        if (dims[i] <= 0) throw invalid("dims[" + std::to_string(i) + "] must be > 0, got " + std::to_string(dims[i]));
    if (call->mode != NORMCONF_TRAIN && call->mode != NORMCONF_EVAL)
        throw invalid("unknown mode code " + std::to_string(call->mode));
    if (call->mode == NORMCONF_TRAIN) {
        if (call->cumulative != 0 && call->cumulative != 1) throw invalid("cumulative must be 0 or 1");
        if (!call->cumulative && !(call->momentum >= 0.0 && call->momentum <= 1.0))
            throw invalid("momentum (batch weight) must be in [0, 1]");
        if (call->step < 1) throw invalid("step must be >= 1");
    }
    if (call->running_mean == nullptr || call->running_var == nullptr)
        throw invalid("running_mean and running_var must not be NULL");
}

template <typename T>
void batch_norm(normconf_call* call, const std::vector<std::int64_t>& dims) {
    normconf::BatchNorm<T> bn(dims);
    const auto C = static_cast<std::size_t>(dims[1]);
    const int32_t pd = call->param_dtype;
    if (call->gamma != nullptr) bn.SetGamma(read<T>(call->gamma, pd, C));
    if (call->beta != nullptr) bn.SetBeta(read<T>(call->beta, pd, C));
    bn.SetMean(read<T>(call->running_mean, pd, C));
    bn.SetVariance(read<T>(call->running_var, pd, C));
    bn.SetEpsilon(call->eps);
    const bool train = call->mode == NORMCONF_TRAIN;
    bn.SetTraining(train);
    if (train) {
        if (call->cumulative)
            bn.SetCumulative(true, call->step);
        else
            bn.SetMomentum(call->momentum);
    }
    const auto n = static_cast<std::size_t>(call->x_len);
    const std::vector<T> x = read<T>(call->x, call->dtype, n);
    bn.LoadData(x.data(), n);
    write(call->y, call->dtype, bn.Run());
    if (train) {
        write(call->running_mean, pd, bn.GetMean());
        write(call->running_var, pd, bn.GetVariance());
        call->written |= NORMCONF_WROTE_RUNNING;
        if (call->batch_mean != nullptr) {
            write(call->batch_mean, pd, bn.GetBatchMean());
            call->written |= NORMCONF_WROTE_BATCH_MEAN;
        }
        if (call->batch_var != nullptr) {
            write(call->batch_var, pd, bn.GetBatchVariance());
            call->written |= NORMCONF_WROTE_BATCH_VAR;
        }
    }
}

std::vector<int> normalized_axes(const normconf_call* call) {
    const std::uint32_t mask = call->axes_mask;
    if (mask == 0) throw invalid("layer_norm: axes_mask is 0 (no normalized axis)");
    if (mask >> call->rank != 0)
        throw invalid("layer_norm: axes_mask " + std::to_string(mask) + " names axes beyond rank " +
                      std::to_string(call->rank));
    std::vector<int> axes;
    for (int i = 0; i < call->rank; ++i)
        if (mask & (1u << i)) axes.push_back(i);
    return axes;
}

template <typename T>
void layer_norm(normconf_call* call, const std::vector<std::int64_t>& dims) {
    normconf::LayerNorm<T> ln(dims, normalized_axes(call));  // invalid_argument (EINVAL): empty normalized axis
    const int32_t pd = call->param_dtype;
    const std::size_t m = ln.NormalizedSize();
    if (call->gamma != nullptr) ln.SetGamma(read<T>(call->gamma, pd, m));
    if (call->beta != nullptr) ln.SetBeta(read<T>(call->beta, pd, m));
    ln.SetEpsilon(call->eps);
    const auto n = static_cast<std::size_t>(call->x_len);
    const std::vector<T> x = read<T>(call->x, call->dtype, n);
    ln.LoadData(x.data(), n);
    write(call->y, call->dtype, ln.Run());
    if (call->mean != nullptr) {
        write(call->mean, pd, ln.GetMean());
        call->written |= NORMCONF_WROTE_MEAN;
    }
    if (call->inv_std != nullptr) {
        write(call->inv_std, pd, ln.GetInvStd());
        call->written |= NORMCONF_WROTE_INV_STD;
    }
}

void run(normconf_call* call) {
    const std::vector<std::int64_t> dims = validate_common(call);
    const bool all_float = call->dtype == NORMCONF_FLOAT32 && call->param_dtype == NORMCONF_FLOAT32;
    switch (call->op) {
        case NORMCONF_OP_BATCH_NORM:
            check_batch_norm(call, dims);
            all_float ? batch_norm<float>(call, dims) : batch_norm<double>(call, dims);
            return;
        case NORMCONF_OP_LAYER_NORM:
            all_float ? layer_norm<float>(call, dims) : layer_norm<double>(call, dims);
            return;
        default:
            throw unsupported(std::string(op_name(call->op)) + " is not implemented by normconf cpp");
    }
}

}  // namespace

extern "C" {

int32_t normconf_abi_version(void) { return NORMCONF_ABI_VERSION; }

int32_t normconf_supports(int32_t op, int32_t direction) {
    return (op == NORMCONF_OP_BATCH_NORM || op == NORMCONF_OP_LAYER_NORM) && direction == NORMCONF_FORWARD;
}

const char* normconf_name(void) { return "normconf cpp 2.0"; }

const char* normconf_last_error(void) { return last_error().c_str(); }

int32_t normconf_run(normconf_call* call) {
    return guarded([&] { run(call); });
}

}  // extern "C"
