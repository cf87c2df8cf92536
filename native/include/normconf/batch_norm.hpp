// normconf::BatchNorm — the bundled C++ Batch Normalization (backend `cpp`).
//
// Design (after the C++ class of the article that started normconf, written
// anew for this project): the object is built with the input's dimensions
// (N, C, H, W — or any rank 2..5 as N, C, spatial...), data is loaded with a
// call that checks its length, Run() returns the normalized output, and
// gamma, beta, the running mean and variance and epsilon have setters and
// getters.
//
// Semantics (the normconf defaults, ONNX BatchNormalization-15):
//   training:   mean_c and the *biased* variance var_c over N x spatial,
//               y = gamma_c * (x - mean_c) / sqrt(var_c + eps) + beta_c,
//               running = (1 - w) * running + w * batch   (w: batch weight;
//               cumulative averaging uses w = 1 / step), biased running variance
//   inference:  the same with the running statistics.
// Statistics are accumulated in double with two passes (mean, then squared
// deviations), whatever T is; y is computed in double and rounded to T once.
//
// Errors throw std::invalid_argument (bad dimensions, lengths, eps) or
// normconf::Unsupported; the C ABI layer turns them into return codes.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace normconf {

/// A valid request this implementation does not handle (e.g. an empty batch in training).
class Unsupported : public std::runtime_error {
   public:
    using std::runtime_error::runtime_error;
};

template <typename T>
class BatchNorm {
    static_assert(std::is_floating_point_v<T>, "BatchNorm<T>: T must be float or double");

   public:
    using Acc = double;  // accumulation type of the statistics

    /// The article's constructor: N, C, H, W (rank 4).
    BatchNorm(std::int64_t number, std::int64_t channels, std::int64_t height, std::int64_t width)
        : BatchNorm(std::vector<std::int64_t>{number, channels, height, width}) {}

    /// Any rank 2..5: dims = {N, C, spatial...}.  N may be 0 (an empty batch).
    explicit BatchNorm(std::vector<std::int64_t> dims) : dims_(std::move(dims)) {
        if (dims_.size() < 2 || dims_.size() > 5)
            throw std::invalid_argument("rank must be 2..5 (N, C, spatial...), got " + std::to_string(dims_.size()));
        if (dims_[0] < 0) throw std::invalid_argument("N must be >= 0, got " + std::to_string(dims_[0]));
        for (std::size_t i = 1; i < dims_.size(); ++i)
            if (dims_[i] <= 0)
                throw std::invalid_argument("dimension " + std::to_string(i) + " must be > 0, got " +
                                            std::to_string(dims_[i]));
        number_ = static_cast<std::size_t>(dims_[0]);
        channels_ = static_cast<std::size_t>(dims_[1]);
        spatial_ = 1;
        for (std::size_t i = 2; i < dims_.size(); ++i) spatial_ = checked_mul(spatial_, static_cast<std::size_t>(dims_[i]));
        size_ = checked_mul(checked_mul(number_, channels_), spatial_);
        gamma_.assign(channels_, T(1));
        beta_.assign(channels_, T(0));
        mean_.assign(channels_, T(0));
        variance_.assign(channels_, T(1));
        batch_mean_.assign(channels_, T(0));
        batch_variance_.assign(channels_, T(0));
    }

    /// Copies the input (N, C, spatial...) channels-first; `length` must be N*C*spatial.
    void LoadData(const T* data, std::size_t length) {
        if (length != size_)
            throw std::invalid_argument("LoadData: length " + std::to_string(length) + " != N*C*spatial = " +
                                        std::to_string(size_));
        if (data == nullptr && length != 0) throw std::invalid_argument("LoadData: data is NULL");
        data_.assign(data, data + length);
        loaded_ = true;
    }

    /// Normalizes the loaded data; in training mode also updates the running statistics.
    std::vector<T> Run() {
        if (!loaded_) throw std::invalid_argument("Run: no data loaded (call LoadData first)");
        std::vector<T> out(size_);
        if (training_) {
            if (number_ * spatial_ == 0) throw Unsupported("training on an empty batch: batch statistics are undefined");
            ComputeBatchStatistics();
            Normalize(batch_mean_acc_, batch_var_acc_, out);
            UpdateRunningStatistics();
        } else {
            std::vector<Acc> m(channels_), v(channels_);
            for (std::size_t c = 0; c < channels_; ++c) {
                m[c] = static_cast<Acc>(mean_[c]);
                v[c] = static_cast<Acc>(variance_[c]);
            }
            Normalize(m, v, out);
        }
        return out;
    }

    // --- setters and getters -------------------------------------------------------------
    void SetGamma(std::vector<T> gamma) { gamma_ = CheckPerChannel(std::move(gamma), "gamma"); }
    void SetBeta(std::vector<T> beta) { beta_ = CheckPerChannel(std::move(beta), "beta"); }
    /// Running mean (used in inference, updated in training).
    void SetMean(std::vector<T> mean) { mean_ = CheckPerChannel(std::move(mean), "mean"); }
    /// Running variance (used in inference, updated in training).
    void SetVariance(std::vector<T> variance) { variance_ = CheckPerChannel(std::move(variance), "variance"); }
    void SetEpsilon(double eps) {
        if (!(std::isfinite(eps) && eps > 0)) throw std::invalid_argument("epsilon must be finite and > 0");
        epsilon_ = eps;
    }
    /// Batch weight w of the running update: running = (1 - w) * running + w * batch.
    void SetMomentum(double w) {
        if (!(w >= 0.0 && w <= 1.0)) throw std::invalid_argument("momentum (batch weight) must be in [0, 1]");
        momentum_ = w;
    }
    /// Cumulative moving average: w = 1 / step for the step about to run (1-based).
    void SetCumulative(bool cumulative, std::int64_t step) {
        if (cumulative && step < 1) throw std::invalid_argument("cumulative averaging needs step >= 1");
        cumulative_ = cumulative;
        step_ = step;
    }
    void SetTraining(bool training) { training_ = training; }

    const std::vector<T>& GetGamma() const { return gamma_; }
    const std::vector<T>& GetBeta() const { return beta_; }
    const std::vector<T>& GetMean() const { return mean_; }
    const std::vector<T>& GetVariance() const { return variance_; }
    double GetEpsilon() const { return epsilon_; }
    double GetMomentum() const { return momentum_; }
    bool IsTraining() const { return training_; }
    /// Statistics of the last training batch (biased variance).
    const std::vector<T>& GetBatchMean() const { return batch_mean_; }
    const std::vector<T>& GetBatchVariance() const { return batch_variance_; }
    std::size_t Size() const { return size_; }
    std::size_t Channels() const { return channels_; }

   private:
    static std::size_t checked_mul(std::size_t a, std::size_t b) {
        if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) throw std::invalid_argument("dimensions overflow");
        return a * b;
    }

    std::vector<T> CheckPerChannel(std::vector<T> v, const char* what) const {
        if (v.size() != channels_)
            throw std::invalid_argument(std::string(what) + ": " + std::to_string(v.size()) + " values for C = " +
                                        std::to_string(channels_) + " channels");
        return v;
    }

    void ComputeBatchStatistics() {
        const Acc count = static_cast<Acc>(number_ * spatial_);
        batch_mean_acc_.assign(channels_, 0.0);
        batch_var_acc_.assign(channels_, 0.0);
        for (std::size_t c = 0; c < channels_; ++c) {
            Acc sum = 0.0;
            for (std::size_t n = 0; n < number_; ++n) {
                const T* p = &data_[(n * channels_ + c) * spatial_];
                for (std::size_t s = 0; s < spatial_; ++s) sum += static_cast<Acc>(p[s]);
            }
            const Acc mean = sum / count;
            Acc sq = 0.0;
            for (std::size_t n = 0; n < number_; ++n) {
                const T* p = &data_[(n * channels_ + c) * spatial_];
                for (std::size_t s = 0; s < spatial_; ++s) {
                    const Acc d = static_cast<Acc>(p[s]) - mean;
                    sq += d * d;
                }
            }
            batch_mean_acc_[c] = mean;
            batch_var_acc_[c] = sq / count;  // biased: divide by the number of elements
            batch_mean_[c] = static_cast<T>(mean);
            batch_variance_[c] = static_cast<T>(batch_var_acc_[c]);
        }
    }

    void Normalize(const std::vector<Acc>& mean, const std::vector<Acc>& var, std::vector<T>& out) const {
        for (std::size_t c = 0; c < channels_; ++c) {
            const Acc inv_std = 1.0 / std::sqrt(var[c] + epsilon_);
            const Acc g = static_cast<Acc>(gamma_[c]);
            const Acc b = static_cast<Acc>(beta_[c]);
            for (std::size_t n = 0; n < number_; ++n) {
                const std::size_t base = (n * channels_ + c) * spatial_;
                for (std::size_t s = 0; s < spatial_; ++s)
                    out[base + s] = static_cast<T>(g * ((static_cast<Acc>(data_[base + s]) - mean[c]) * inv_std) + b);
            }
        }
    }

    void UpdateRunningStatistics() {
        const Acc w = cumulative_ ? 1.0 / static_cast<Acc>(step_) : momentum_;
        for (std::size_t c = 0; c < channels_; ++c) {
            mean_[c] = static_cast<T>((1.0 - w) * static_cast<Acc>(mean_[c]) + w * batch_mean_acc_[c]);
            variance_[c] = static_cast<T>((1.0 - w) * static_cast<Acc>(variance_[c]) + w * batch_var_acc_[c]);
        }
    }

    std::vector<std::int64_t> dims_;
    std::size_t number_ = 0, channels_ = 0, spatial_ = 1, size_ = 0;
    std::vector<T> data_;
    bool loaded_ = false;
    std::vector<T> gamma_, beta_, mean_, variance_;
    std::vector<T> batch_mean_, batch_variance_;
    std::vector<Acc> batch_mean_acc_, batch_var_acc_;
    double epsilon_ = 1e-5;
    double momentum_ = 0.1;
    bool cumulative_ = false;
    std::int64_t step_ = 1;
    bool training_ = true;
};

}  // namespace normconf
