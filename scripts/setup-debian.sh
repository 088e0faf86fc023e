#!/usr/bin/env bash
# Installs the Debian 12 packages parakeet-engine builds and tests with (only those missing).
set -euo pipefail
packages=(
  cmake ninja-build g++ pkg-config clang libclang-rt-14-dev
  libopenblas-openmp-dev libsndfile1-dev libsoxr-dev libyaml-cpp-dev libsentencepiece-dev libarchive-dev
  nlohmann-json3-dev libcli11-dev libfmt-dev libkissfft-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3-torch python3-numpy python3-sentencepiece python3-yaml python3-matplotlib
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
