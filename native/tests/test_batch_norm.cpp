// Unit test of normconf::BatchNorm and its C ABI v2 layer (op batch_norm) (no framework; exit code 0 = pass).
// Built and run by tests/test_native_cpp.py (or: cmake -DNORMCONF_BUILD_TESTS=ON, ctest).
//
// Expected values are the article's seed example (DESIGN.md), computed independently
// in float64; the tolerance 2e-6 covers rounding y to float32 (|y| < 2.4, ulp ~2.4e-7)
// plus the 6-decimal rounding of the published numbers (5e-7).
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "normconf/batch_norm.hpp"
#include "normconf.h"

static int failures = 0;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++failures;                                                     \
        }                                                                   \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                     \
    do {                                                                                          \
        double _a = (a), _b = (b);                                                                \
        if (!(std::fabs(_a - _b) <= (tol))) {                                                     \
            std::fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g (tol %g)\n", __FILE__, __LINE__, #a, _a, _b, \
                         (double)(tol));                                                          \
            ++failures;                                                                           \
        }                                                                                         \
    } while (0)

template <typename F>
static bool throws_invalid(F&& f) {
    try {
        f();
    } catch (const std::invalid_argument&) {
        return true;
    }
    return false;
}

static const std::vector<float> kSeed = {11.1f,  -2.2f,  23.3f, 54.4f, 58.5f, -16.6f, -97.7f, -28.8f, 49.9f,
                                         -61.3f, 52.6f,  -33.9f, -2.45f, -15.7f, 72.4f, 9.1f,  47.2f, 21.7f};
static const double kSeedY[18] = {0.073358,  -0.228133, 0.349912,  1.054900,  1.147841,  -0.554558,
                                  -2.392967, -0.831113, 0.952892,  -1.567836, 1.014097,  -0.946722,
                                  -0.233800, -0.534156, 1.462932,  0.028021,  0.891688,  0.313643};

static void test_seed_article() {
    normconf::BatchNorm<float> bn(3, 1, 1, 6);  // the article's constructor: N, C, H, W
    CHECK(bn.Size() == 18);
    bn.LoadData(kSeed.data(), kSeed.size());
    CHECK_NEAR(bn.GetEpsilon(), 1e-5, 0.0);
    const std::vector<float> y = bn.Run();
    CHECK(y.size() == 18);
    for (int i = 0; i < 18; ++i) CHECK_NEAR(y[i], kSeedY[i], 2e-6);
    // batch statistics (DESIGN.md: mean 7.863889, biased variance 1946.064931)
    CHECK_NEAR(bn.GetBatchMean()[0], 7.863889, 1e-5);
    CHECK_NEAR(bn.GetBatchVariance()[0], 1946.064931, 2e-3);  // float32: ulp(1946) = 1.2e-4
    // running update with the default batch weight 0.1: 0.9*0 + 0.1*mean, 0.9*1 + 0.1*var
    CHECK_NEAR(bn.GetMean()[0], 0.7863889, 1e-6);
    CHECK_NEAR(bn.GetVariance()[0], 0.9 + 194.6064931, 2e-4);
}

static void test_length_and_arguments() {
    normconf::BatchNorm<double> bn(std::vector<std::int64_t>{2, 3});
    std::vector<double> x(5);
    CHECK(throws_invalid([&] { bn.LoadData(x.data(), x.size()); }));  // 5 != 2*3
    CHECK(throws_invalid([&] { bn.Run(); }));                           // nothing loaded
    CHECK(throws_invalid([&] { bn.SetEpsilon(0.0); }));
    CHECK(throws_invalid([&] { bn.SetEpsilon(-1e-5); }));
    CHECK(throws_invalid([&] { bn.SetGamma({1.0, 2.0}); }));  // C = 3
    CHECK(throws_invalid([&] { bn.SetMomentum(1.5); }));
    CHECK(throws_invalid([] { normconf::BatchNorm<float>(std::vector<std::int64_t>{4}); }));  // rank 1
    CHECK(throws_invalid([] { normconf::BatchNorm<float>(std::vector<std::int64_t>{1, 2, 3, 4, 5, 6}); }));
    CHECK(throws_invalid([] { normconf::BatchNorm<float>(2, 0, 1, 1); }));  // C = 0
}

static void test_affine_eval_and_rank5() {
    // rank 5, two channels: gamma/beta, then eval with given running statistics
    normconf::BatchNorm<double> bn(std::vector<std::int64_t>{2, 2, 1, 2, 1});
    const std::vector<double> x = {1, 3, 10, 30, 5, 7, 50, 70};  // c0: 1,3,5,7  c1: 10,30,50,70
    bn.SetGamma({2.0, 0.5});
    bn.SetBeta({1.0, -1.0});
    bn.SetMomentum(0.25);
    bn.SetMean({1.0, 2.0});
    bn.SetVariance({3.0, 4.0});
    bn.SetEpsilon(1e-3);
    bn.LoadData(x.data(), x.size());
    std::vector<double> y = bn.Run();
    // c0: mean 4, biased var 5 -> y = 2*(x-4)/sqrt(5.001) + 1
    CHECK_NEAR(y[0], 2 * (1 - 4) / std::sqrt(5.001) + 1, 1e-12);
    CHECK_NEAR(y[5], 2 * (7 - 4) / std::sqrt(5.001) + 1, 1e-12);
    // c1: mean 40, biased var 500
    CHECK_NEAR(y[2], 0.5 * (10 - 40) / std::sqrt(500.001) - 1, 1e-12);
    CHECK_NEAR(bn.GetMean()[0], 0.75 * 1.0 + 0.25 * 4.0, 1e-12);
    CHECK_NEAR(bn.GetVariance()[1], 0.75 * 4.0 + 0.25 * 500.0, 1e-12);
    // eval: uses the (updated) running statistics, leaves them alone
    bn.SetTraining(false);
    const double rm = bn.GetMean()[0], rv = bn.GetVariance()[0];
    y = bn.Run();
    CHECK_NEAR(y[0], 2 * (1 - rm) / std::sqrt(rv + 1e-3) + 1, 1e-12);
    CHECK_NEAR(bn.GetMean()[0], rm, 0.0);
    // cumulative average: step 2 gives w = 1/2
    normconf::BatchNorm<double> cum(std::vector<std::int64_t>{4, 1});
    const std::vector<double> x2 = {1, 2, 3, 6};  // mean 3, var 3.5
    cum.SetCumulative(true, 2);
    cum.SetMean({1.0});
    cum.SetVariance({1.5});
    cum.LoadData(x2.data(), x2.size());
    cum.Run();
    CHECK_NEAR(cum.GetMean()[0], 2.0, 1e-12);
    CHECK_NEAR(cum.GetVariance()[0], 2.5, 1e-12);
}

static normconf_call seed_call(std::vector<float>& y, float* rm, float* rv) {
    normconf_call c{};
    c.struct_size = sizeof c;
    c.abi_version = NORMCONF_ABI_VERSION;
    c.op = NORMCONF_OP_BATCH_NORM;
    c.direction = NORMCONF_FORWARD;
    c.dtype = c.param_dtype = NORMCONF_FLOAT32;
    c.rank = 4;
    c.mode = NORMCONF_TRAIN;
    c.dims[0] = 3; c.dims[1] = 1; c.dims[2] = 1; c.dims[3] = 6;
    c.x_len = 18;
    c.eps = 1e-5;
    c.momentum = 0.1;
    c.step = 1;
    c.x = kSeed.data();
    c.running_mean = rm;
    c.running_var = rv;
    c.y = y.data();
    return c;
}

static void test_c_abi() {
    CHECK(normconf_abi_version() == NORMCONF_ABI_VERSION);
    CHECK(normconf_supports(NORMCONF_OP_BATCH_NORM, NORMCONF_FORWARD) == 1);
    CHECK(normconf_supports(NORMCONF_OP_BATCH_NORM, NORMCONF_BACKWARD) == 0);
    std::vector<float> y(18);
    float rm = 0.f, rv = 1.f, bm = 0.f, bv = 0.f;
    normconf_call c = seed_call(y, &rm, &rv);
    c.batch_mean = &bm;
    c.batch_var = &bv;
    CHECK(normconf_run(&c) == NORMCONF_OK);
    CHECK(c.written == (NORMCONF_WROTE_BATCH_MEAN | NORMCONF_WROTE_BATCH_VAR | NORMCONF_WROTE_RUNNING));
    CHECK_NEAR(y[6], kSeedY[6], 2e-6);
    CHECK_NEAR(bm, 7.863889, 1e-5);

    // the double path (float64 parameters with float32 data) gives the same float32 y bit for bit
    std::vector<float> y2(18);
    double rm2 = 0.0, rv2 = 1.0;
    c = seed_call(y2, nullptr, nullptr);
    c.param_dtype = NORMCONF_FLOAT64;
    c.running_mean = &rm2;
    c.running_var = &rv2;
    CHECK(normconf_run(&c) == NORMCONF_OK);
    CHECK(y2 == y);
    CHECK_NEAR(rm2, 0.7863889, 1e-6);  // the running mean in double this time

    // argument errors are return codes with a message, never an abort
    c = seed_call(y, &rm, &rv);
    c.x_len = 17;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    CHECK(std::string(normconf_last_error()).find("x_len") != std::string::npos);
    c = seed_call(y, &rm, &rv);
    c.eps = 0.0;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    c = seed_call(y, &rm, &rv);
    c.dims[1] = 0;
    c.x_len = 0;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    c = seed_call(y, &rm, &rv);
    c.rank = 9;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    c = seed_call(y, &rm, &rv);
    c.x = nullptr;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    CHECK(normconf_run(nullptr) == NORMCONF_EINVAL);
    c = seed_call(y, &rm, &rv);
    c.dims[0] = 0;
    c.x_len = 0;
    CHECK(normconf_run(&c) == NORMCONF_EUNSUPPORTED);  // empty training batch
    c = seed_call(y, &rm, &rv);
    c.struct_size = 8;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    c = seed_call(y, &rm, &rv);
    c.dtype = 7;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    c = seed_call(y, &rm, &rv);
    c.op = 17;
    CHECK(normconf_run(&c) == NORMCONF_EINVAL);
    c = seed_call(y, &rm, &rv);
    c.op = NORMCONF_OP_GROUP_NORM;  // reserved: valid code, not implemented
    CHECK(normconf_run(&c) == NORMCONF_EUNSUPPORTED);
    c = seed_call(y, &rm, &rv);
    c.direction = NORMCONF_BACKWARD;
    CHECK(normconf_run(&c) == NORMCONF_EUNSUPPORTED);
    CHECK(std::string(normconf_last_error()).find("gradients") != std::string::npos);
    c = seed_call(y, &rm, &rv);
    c.flags = 1;
    CHECK(normconf_run(&c) == NORMCONF_EUNSUPPORTED);
    c = seed_call(y, &rm, &rv);
    c.rank = 6;
    c.dims[4] = c.dims[5] = 1;
    CHECK(normconf_run(&c) == NORMCONF_EUNSUPPORTED);  // valid in the ABI, not in normconf::BatchNorm
}

int main() {
    test_seed_article();
    test_length_and_arguments();
    test_affine_eval_and_rank5();
    test_c_abi();
    if (failures) {
        std::fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    std::printf("test_batch_norm: all checks passed\n");
    return 0;
}
