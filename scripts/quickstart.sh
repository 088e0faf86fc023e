#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install what is missing, build, then inspect and transcribe with
# the tiny checkpoint the project ships (random weights: its text is meaningless, the pipeline is real).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cmake --preset release >/dev/null
cmake --build build/release -j"$(nproc)"
model=tests/data/tiny-a/model/tiny-a.nemo
./build/release/parakeet inspect -m "$model"
./build/release/parakeet transcribe -m "$model" --format json tests/data/tiny-a/inputs/clip3.wav
