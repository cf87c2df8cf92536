// The C ABI (normconf_bn.h) over normconf::BatchNorm: backend `cpp`.
#include "abi_support.hpp"

namespace {

using namespace normconf::abi;

template <typename T>
void forward(normconf_bn_call* call, const Shape& shape) {
    normconf::BatchNorm<T> bn(shape.dims);
    const std::int64_t C = shape.c;
    if (call->gamma != nullptr) bn.SetGamma(per_channel<T>(call->gamma, C));
    if (call->beta != nullptr) bn.SetBeta(per_channel<T>(call->beta, C));
    bn.SetMean(per_channel<T>(call->running_mean, C));
    bn.SetVariance(per_channel<T>(call->running_var, C));
    bn.SetEpsilon(call->eps);
    const bool train = call->mode == NORMCONF_BN_TRAIN;
    bn.SetTraining(train);
    if (train) {
        if (call->cumulative)
            bn.SetCumulative(true, call->step);
        else
            bn.SetMomentum(call->momentum);
    }
    bn.LoadData(static_cast<const T*>(call->x), static_cast<std::size_t>(call->x_len));
    const std::vector<T> y = bn.Run();
    if (!y.empty()) store(call->y, y);
    if (train) {
        store(call->running_mean, bn.GetMean());
        store(call->running_var, bn.GetVariance());
        call->written |= NORMCONF_BN_WROTE_RUNNING;
        if (call->batch_mean != nullptr) {
            store(call->batch_mean, bn.GetBatchMean());
            call->written |= NORMCONF_BN_WROTE_BATCH_MEAN;
        }
        if (call->batch_var != nullptr) {
            store(call->batch_var, bn.GetBatchVariance());
            call->written |= NORMCONF_BN_WROTE_BATCH_VAR;
        }
    }
}

}  // namespace

extern "C" {

int32_t normconf_bn_abi_version(void) { return NORMCONF_BN_ABI_VERSION; }

const char* normconf_bn_name(void) { return "normconf cpp 1.0"; }

const char* normconf_bn_last_error(void) { return last_error().c_str(); }

int32_t normconf_bn_forward(normconf_bn_call* call) {
    return guarded([&] {
        const Shape shape = validate(call);
        if (call->dtype == NORMCONF_BN_FLOAT32)
            forward<float>(call, shape);
        else
            forward<double>(call, shape);
    });
}

}  // extern "C"
