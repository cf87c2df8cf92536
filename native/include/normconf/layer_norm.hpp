// normconf::LayerNorm — the bundled C++ Layer Normalization (backend `cpp`).
//
// Design (the same shape as normconf::BatchNorm): the object is built with the
// input's dimensions and the normalized axes, data is loaded with a call that
// checks its length, Run() returns the normalized output, and gamma, beta and
// epsilon have setters and getters; GetMean()/GetInvStd() return the statistics
// of the last Run().
//
// Semantics (ONNX LayerNormalization-17, PyTorch layer_norm, over any set of axes):
//   R = the normalized axes, M = product of the dims at R; for every index k over
//   the other axes (a "row"):
//     mean_k    = (1/M) * sum_R x
//     var_k     = (1/M) * sum_R (x - mean_k)^2          (biased: divide by M)
//     inv_std_k = 1 / sqrt(var_k + eps)
//     y         = gamma[r] * ((x - mean_k) / sqrt(var_k + eps)) + beta[r]
//   gamma/beta have the shape of the dims at R, in axis order (normalized_shape),
//   C-contiguous; the default is gamma = 1, beta = 0.  Statistics are accumulated
//   in double with two passes (mean, then squared deviations), whatever T is; y is
//   computed in double and rounded to T once.  The statistics are one value per row
//   in C order over the non-normalized axes (x's shape with the dims at R set to 1).
//
// Shapes: rank 1..8; dims >= 0, dims at R >= 1 (a row of zero elements has no mean);
// a zero-sized x is valid (nothing to compute).  Errors throw std::invalid_argument.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace normconf {

template <typename T>
class LayerNorm {
    static_assert(std::is_floating_point_v<T>, "LayerNorm<T>: T must be float or double");

   public:
    using Acc = double;  // accumulation type of the statistics
    static constexpr std::size_t kMaxRank = 8;

    /// dims: x's shape (rank 1..8); axes: the normalized axes, sorted, distinct, in [0, rank).
    LayerNorm(std::vector<std::int64_t> dims, std::vector<int> axes) : dims_(std::move(dims)), axes_(std::move(axes)) {
        const std::size_t rank = dims_.size();
        if (rank < 1 || rank > kMaxRank)
            throw std::invalid_argument("rank must be 1..8, got " + std::to_string(rank));
        if (axes_.empty()) throw std::invalid_argument("at least one axis must be normalized");
        std::vector<bool> normalized(rank, false);
        for (std::size_t i = 0; i < axes_.size(); ++i) {
            const int a = axes_[i];
            if (a < 0 || static_cast<std::size_t>(a) >= rank)
                throw std::invalid_argument("normalized axis " + std::to_string(a) + " out of range for rank " +
                                            std::to_string(rank));
            if (i > 0 && a <= axes_[i - 1]) throw std::invalid_argument("normalized axes must be sorted and distinct");
            normalized[static_cast<std::size_t>(a)] = true;
        }
        for (std::size_t i = 0; i < rank; ++i) {
            if (dims_[i] < 0) throw std::invalid_argument("dims[" + std::to_string(i) + "] must be >= 0");
            if (normalized[i] && dims_[i] == 0)
                throw std::invalid_argument("normalized axis " + std::to_string(i) + " has size 0 (empty rows)");
        }
        // strides of x (C order), then the offsets of one row's elements and of every row's first element
        std::vector<std::size_t> stride(rank, 1);
        for (std::size_t i = rank - 1; i > 0; --i) stride[i - 1] = checked_mul(stride[i], as_size(dims_[i]));
        size_ = checked_mul(stride[0], as_size(dims_[0]));
        std::vector<std::size_t> kept;
        for (std::size_t i = 0; i < rank; ++i)
            if (!normalized[i]) kept.push_back(i);
        std::vector<std::size_t> norm(axes_.begin(), axes_.end());
        row_offsets_ = offsets(norm, stride);   // element r of a row (gamma/beta index r)
        row_starts_ = offsets(kept, stride);    // row k (statistics index k)
        if (size_ == 0) row_starts_.clear();
        gamma_.assign(row_offsets_.size(), T(1));
        beta_.assign(row_offsets_.size(), T(0));
    }

    /// Copies the input (C-contiguous, x's shape); `length` must be the product of dims.
    void LoadData(const T* data, std::size_t length) {
        if (length != size_)
            throw std::invalid_argument("LoadData: length " + std::to_string(length) + " != product of dims = " +
                                        std::to_string(size_));
        if (data == nullptr && length != 0) throw std::invalid_argument("LoadData: data is NULL");
        data_.assign(data, data + length);
        loaded_ = true;
    }

    /// Normalizes the loaded data; GetMean()/GetInvStd() then hold this run's statistics.
    std::vector<T> Run() {
        if (!loaded_) throw std::invalid_argument("Run: no data loaded (call LoadData first)");
        std::vector<T> out(size_);
        const std::size_t rows = row_starts_.size(), m = row_offsets_.size();
        mean_.assign(rows, T(0));
        inv_std_.assign(rows, T(0));
        for (std::size_t k = 0; k < rows; ++k) {
            const T* x = data_.data() + row_starts_[k];
            Acc sum = 0.0;
            for (std::size_t r = 0; r < m; ++r) sum += static_cast<Acc>(x[row_offsets_[r]]);
            const Acc mean = sum / static_cast<Acc>(m);
            Acc sq = 0.0;
            for (std::size_t r = 0; r < m; ++r) {
                const Acc d = static_cast<Acc>(x[row_offsets_[r]]) - mean;
                sq += d * d;
            }
            const Acc var = sq / static_cast<Acc>(m);  // biased
            const Acc std = std::sqrt(var + epsilon_);
            T* y = out.data() + row_starts_[k];
            for (std::size_t r = 0; r < m; ++r) {
                const Acc xhat = (static_cast<Acc>(x[row_offsets_[r]]) - mean) / std;
                y[row_offsets_[r]] = static_cast<T>(static_cast<Acc>(gamma_[r]) * xhat + static_cast<Acc>(beta_[r]));
            }
            mean_[k] = static_cast<T>(mean);
            inv_std_[k] = static_cast<T>(1.0 / std);
        }
        return out;
    }

    // --- setters and getters -------------------------------------------------------------
    /// gamma/beta: NormalizedSize() values (the normalized dims' shape, C order).
    void SetGamma(std::vector<T> gamma) { gamma_ = CheckPerElement(std::move(gamma), "gamma"); }
    void SetBeta(std::vector<T> beta) { beta_ = CheckPerElement(std::move(beta), "beta"); }
    void SetEpsilon(double eps) {
        if (!(std::isfinite(eps) && eps > 0)) throw std::invalid_argument("epsilon must be finite and > 0");
        epsilon_ = eps;
    }
    const std::vector<T>& GetGamma() const { return gamma_; }
    const std::vector<T>& GetBeta() const { return beta_; }
    double GetEpsilon() const { return epsilon_; }
    /// Per-row statistics of the last Run(): RowCount() values each.
    const std::vector<T>& GetMean() const { return mean_; }
    const std::vector<T>& GetInvStd() const { return inv_std_; }
    std::size_t Size() const { return size_; }
    /// M: elements per row (product of the normalized dims).
    std::size_t NormalizedSize() const { return row_offsets_.size(); }
    /// Rows: product of the other dims (0 if x is empty).
    std::size_t RowCount() const { return row_starts_.size(); }

   private:
    static std::size_t as_size(std::int64_t d) { return static_cast<std::size_t>(d); }

    static std::size_t checked_mul(std::size_t a, std::size_t b) {
        if (a != 0 && b > std::numeric_limits<std::size_t>::max() / a) throw std::invalid_argument("dimensions overflow");
        return a * b;
    }

    /// Offsets into x of every C-order index over `axes` (the other coordinates 0).
    std::vector<std::size_t> offsets(const std::vector<std::size_t>& axes, const std::vector<std::size_t>& stride) const {
        std::size_t count = 1;
        for (std::size_t a : axes) count = checked_mul(count, as_size(dims_[a]));
        std::vector<std::size_t> out;
        if (count == 0) return out;
        out.reserve(count);
        std::vector<std::size_t> idx(axes.size(), 0);
        for (std::size_t i = 0; i < count; ++i) {
            std::size_t off = 0;
            for (std::size_t j = 0; j < axes.size(); ++j) off += idx[j] * stride[axes[j]];
            out.push_back(off);
            for (std::size_t j = axes.size(); j-- > 0;) {  // odometer, last axis fastest
                if (++idx[j] < as_size(dims_[axes[j]])) break;
                idx[j] = 0;
            }
        }
        return out;
    }

    std::vector<T> CheckPerElement(std::vector<T> v, const char* what) const {
        if (v.size() != row_offsets_.size())
            throw std::invalid_argument(std::string(what) + ": " + std::to_string(v.size()) +
                                        " values for a normalized shape of " + std::to_string(row_offsets_.size()) +
                                        " elements");
        return v;
    }

    std::vector<std::int64_t> dims_;
    std::vector<int> axes_;
    std::size_t size_ = 0;
    std::vector<std::size_t> row_offsets_, row_starts_;
    std::vector<T> data_;
    bool loaded_ = false;
    std::vector<T> gamma_, beta_, mean_, inv_std_;
    double epsilon_ = 1e-5;
};

}  // namespace normconf
