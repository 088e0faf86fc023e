// How the batched streaming engine splits the ready streams into launches (StreamBatchEngine::launch_size): each
// launch runs padded to a power of two, so a remainder that would pad a large launch heavily is split off.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/stream_batch.h"

namespace parakeet {
namespace {

std::vector<size_t> launches(size_t n, int max_batch) {
    std::vector<size_t> out;
    for (size_t done = 0; done < n;) {
        const size_t k = StreamBatchEngine::launch_size(n - done, max_batch);
        EXPECT_GT(k, 0u);
        if (k == 0) break;
        out.push_back(k);
        done += k;
    }
    return out;
}

TEST(LaunchSize, SmallGroupsRunAsOneLaunch) {
    EXPECT_EQ(launches(1, 2048), (std::vector<size_t>{1}));
    EXPECT_EQ(launches(100, 2048), (std::vector<size_t>{100}));  // padded to 128
    EXPECT_EQ(launches(256, 2048), (std::vector<size_t>{256}));
}

TEST(LaunchSize, HeavyPaddingIsSplitOff) {
    // 300 in a launch of 512 would pad 41%: 256 + 44 (padded to 64).
    EXPECT_EQ(launches(300, 2048), (std::vector<size_t>{256, 44}));
    // 1536 in 2048 pads 25%: 1024 + 512, no padding.
    EXPECT_EQ(launches(1536, 2048), (std::vector<size_t>{1024, 512}));
    // An eighth or less is padded: 480 of 512, 2000 of 2048 in one launch.
    EXPECT_EQ(launches(480, 2048), (std::vector<size_t>{480}));
    EXPECT_EQ(launches(2000, 2048), (std::vector<size_t>{2000}));
}

TEST(LaunchSize, LaunchesStayWithinTheMaximum) {
    EXPECT_EQ(launches(2048, 2048), (std::vector<size_t>{2048}));
    EXPECT_EQ(launches(5000, 2048), (std::vector<size_t>{2048, 2048, 904}));  // 904 of 1024: padded
    EXPECT_EQ(launches(2048, 1024), (std::vector<size_t>{1024, 1024}));
    EXPECT_EQ(launches(3, 1), (std::vector<size_t>{1, 1, 1}));
}

}  // namespace
}  // namespace parakeet
