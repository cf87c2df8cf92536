// The C ABI (normconf_bn.h) over the real tiny-dnn: backend `tiny-dnn`.
//
// Runs tiny_dnn::batch_normalization_layer (the Debian `tiny-dnn` headers) and
// translates the call into tiny-dnn's own conventions; it never corrects what
// the layer computes.  Translation:
//   * layout: tiny-dnn's tensor_t holds one vec_t per sample, channel-major
//     inside the sample ([c][spatial]) — exactly the ABI's channels-first
//     layout, so each sample is copied as is; spatial dims are flattened
//     (in_spatial_size = product of spatial dims, 1 for rank 2).
//   * eps: the layer's `epsilon` (inside the square root, as the ABI asks).
//   * momentum: tiny-dnn's post_update() computes
//       running = momentum * running + (1 - momentum) * batch
//     so tiny-dnn's momentum = 1 - w (w = the ABI's batch weight).
//   * initial running statistics: set_mean() / set_variance().
//   * mode: set_context(net_phase::train / net_phase::test).
// What cannot be translated is refused with NORMCONF_BN_EUNSUPPORTED:
//   gamma/beta other than NULL (the layer has no scale/shift; the Python adapter
//   passes NULL when the case's gamma is all ones and beta all zeros),
//   cumulative averaging, element types other than tiny_dnn::float_t, empty
//   training batches (moments() reads in[0]).
// Outputs: y from forward_propagation(); the batch statistics the layer
// computed (its mean_current_/variance_current_, private) are read through the
// layer's own update_immidiately(true) switch, which copies them into the
// running statistics, and save(); the running statistics are then restored
// with set_mean()/set_variance() and updated by the layer's post_update(), as
// tiny-dnn's network::update_weights() does after each batch.
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "abi_support.hpp"
#include "tiny_dnn/tiny_dnn.h"

namespace {

using namespace normconf::abi;
using tiny_dnn::float_t;
using tiny_dnn::serial_size_t;
using tiny_dnn::tensor_t;
using tiny_dnn::vec_t;

constexpr int32_t kDtype = std::is_same_v<float_t, double> ? NORMCONF_BN_FLOAT64 : NORMCONF_BN_FLOAT32;

/// The layer's running statistics, read with its own save() at full precision.
void read_stats(const tiny_dnn::batch_normalization_layer& layer, std::size_t C, vec_t& mean, vec_t& var) {
    std::ostringstream os;
    os << std::setprecision(std::numeric_limits<float_t>::max_digits10);
    layer.save(os);
    std::istringstream is(os.str());
    mean.assign(C, 0);
    var.assign(C, 0);
    std::string tok;
    for (std::size_t i = 0; i < 2 * C; ++i) {
        if (!(is >> tok)) throw CallError(NORMCONF_BN_EINTERNAL, "tiny-dnn save(): fewer values than expected");
        const double v = std::strtod(tok.c_str(), nullptr);  // also reads nan/inf
        (i < C ? mean[i] : var[i - C]) = static_cast<float_t>(v);
    }
}

void forward(normconf_bn_call* call, const Shape& shape) {
    if (call->dtype != kDtype)
        throw CallError(NORMCONF_BN_EUNSUPPORTED,
                        std::string("this tiny-dnn build computes in ") +
                            (kDtype == NORMCONF_BN_FLOAT64 ? "double" : "float") +
                            " (tiny_dnn::float_t); other element types are not supported");
    if (call->gamma != nullptr || call->beta != nullptr)
        throw CallError(NORMCONF_BN_EUNSUPPORTED,
                        "tiny_dnn::batch_normalization_layer has no gamma/beta (scale/shift)");
    const bool train = call->mode == NORMCONF_BN_TRAIN;
    if (train && call->cumulative)
        throw CallError(NORMCONF_BN_EUNSUPPORTED, "tiny-dnn has no cumulative moving average (only momentum)");
    if (train && shape.n == 0)
        throw CallError(NORMCONF_BN_EUNSUPPORTED, "tiny-dnn's moments() needs at least one sample (it reads in[0])");
    const std::size_t N = static_cast<std::size_t>(shape.n);
    const std::size_t C = static_cast<std::size_t>(shape.c);
    const std::size_t S = static_cast<std::size_t>(shape.spatial);
    if (C * S > std::numeric_limits<serial_size_t>::max())
        throw CallError(NORMCONF_BN_EUNSUPPORTED, "sample too large for tiny-dnn's serial_size_t");

    const float_t momentum = static_cast<float_t>(1.0 - call->momentum);  // tiny-dnn weights the OLD value
    tiny_dnn::batch_normalization_layer layer(static_cast<serial_size_t>(S), static_cast<serial_size_t>(C),
                                              static_cast<float_t>(call->eps), momentum,
                                              train ? tiny_dnn::net_phase::train : tiny_dnn::net_phase::test);
    const float_t* rm = static_cast<const float_t*>(call->running_mean);
    const float_t* rv = static_cast<const float_t*>(call->running_var);
    const vec_t run_mean(rm, rm + C);
    const vec_t run_var(rv, rv + C);
    layer.set_mean(run_mean);
    layer.set_variance(run_var);
    if (train) layer.update_immidiately(true);  // copies the batch statistics out (see the file comment)

    const float_t* x = static_cast<const float_t*>(call->x);
    tensor_t in(N), out(N);
    for (std::size_t n = 0; n < N; ++n) {
        in[n].assign(x + n * C * S, x + (n + 1) * C * S);
        out[n].assign(C * S, float_t(0));
    }
    std::vector<tensor_t*> in_v{&in}, out_v{&out};
    layer.forward_propagation(in_v, out_v);

    float_t* y = static_cast<float_t*>(call->y);
    for (std::size_t n = 0; n < N; ++n) std::memcpy(y + n * C * S, out[n].data(), C * S * sizeof(float_t));

    if (train) {
        vec_t batch_mean, batch_var;
        read_stats(layer, C, batch_mean, batch_var);  // = mean_current_, variance_current_
        layer.set_mean(run_mean);
        layer.set_variance(run_var);
        layer.post_update();  // running = momentum * running + (1 - momentum) * batch
        vec_t new_mean, new_var;
        read_stats(layer, C, new_mean, new_var);
        store(call->running_mean, new_mean);
        store(call->running_var, new_var);
        call->written |= NORMCONF_BN_WROTE_RUNNING;
        if (call->batch_mean != nullptr) {
            store(call->batch_mean, batch_mean);
            call->written |= NORMCONF_BN_WROTE_BATCH_MEAN;
        }
        if (call->batch_var != nullptr) {
            store(call->batch_var, batch_var);
            call->written |= NORMCONF_BN_WROTE_BATCH_VAR;
        }
    }
}

}  // namespace

extern "C" {

int32_t normconf_bn_abi_version(void) { return NORMCONF_BN_ABI_VERSION; }

const char* normconf_bn_name(void) {
    return kDtype == NORMCONF_BN_FLOAT64 ? "tiny-dnn (Debian headers, CNN_USE_DOUBLE)" : "tiny-dnn (Debian headers)";
}

const char* normconf_bn_last_error(void) { return last_error().c_str(); }

int32_t normconf_bn_forward(normconf_bn_call* call) {
    return guarded([&] { forward(call, validate(call)); });
}

}  // extern "C"
