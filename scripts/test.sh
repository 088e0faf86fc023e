#!/usr/bin/env bash
# Every test: installs what is missing, builds (release, CUDA code compiled when nvcc exists; CUDA tests skip
# without a GPU) and runs ctest, then the sanitizer build's tests, then the PyTorch reference's own check
# against NeMo's goldens.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
jobs=$(nproc)
cmake --preset release >/dev/null
cmake --build build/release -j"$jobs"
ctest --test-dir build/release --output-on-failure -j"$jobs"
if [ "${PARAKEET_SKIP_ASAN:-0}" != 1 ]; then
  cmake --preset debug-asan >/dev/null
  cmake --build build/debug-asan -j"$jobs"
  PARAKEET_SKIP_SLOW=1 ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build/debug-asan --output-on-failure -j"$jobs" -LE slow
fi
/usr/bin/python3 tools/reference/check_tiny_a.py
