// Helpers shared by the test suites: tensor comparison and process memory.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "runtime/model.h"

namespace parakeet::testing {

// The tiny-a fixture (NeMo's own goldens) and its model, loaded once per test program.
inline const std::string kTinyADir = std::string(PARAKEET_TEST_DATA_DIR) + "/tiny-a";

inline std::shared_ptr<const Model> tiny_a_model() {
    static auto model = Model::load(kTinyADir + "/model/tiny-a.nemo");
    return model;
}

// Max |a - b| over all elements (float32 view); infinity, and a test failure, when the shapes differ.
inline double max_abs_diff(const Tensor& a, const Tensor& b) {
    EXPECT_EQ(shape_str(a.shape()), shape_str(b.shape()));
    if (a.shape() != b.shape()) return INFINITY;
    Tensor fa = a.to_f32(), fb = b.to_f32();
    double m = 0;
    for (int64_t i = 0; i < fa.numel(); ++i)
        m = std::max(m, static_cast<double>(std::fabs(fa.data<float>()[i] - fb.data<float>()[i])));
    return m;
}

// Integer tensor (int32 or int64) as int64 values.
inline std::vector<int64_t> ints(const Tensor& t) {
    std::vector<int64_t> v;
    for (int64_t i = 0; i < t.numel(); ++i)
        v.push_back(t.dtype() == DType::kI64 ? t.data<int64_t>()[i] : t.data<int32_t>()[i]);
    return v;
}

// Resident set size of this process in KiB.
inline long rss_kb() {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return 0;
}

}  // namespace parakeet::testing
