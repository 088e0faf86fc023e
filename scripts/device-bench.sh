#!/usr/bin/env bash
# The GPU measurements of docs/PERFORMANCE.md and docs/PARITY.md, run on the GPU machine from the repo root after
# unpacking the bundle of scripts/bundle-gpu.sh. Writes its logs to ${OUT:-/tmp/pk-out}.
#   scripts/device-bench.sh /path/to/parakeet-gpu/run.sh
set -u
R=${1:?usage: device-bench.sh RUN_SH}
out=${OUT:-/tmp/pk-out}
mkdir -p "$out"
arch="--arch parakeet-tdt-0.6b-v3 --random-weights --device cuda --threads 16"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
timeout 300 "$R" parakeet_cuda_tests 2>&1 | tail -30 > "$out/cuda_tests.txt"
{
for p in fp32 tf32 fp16 bf16; do
  echo "== offline $p"
  timeout 120 "$R" parakeet bench $arch --precision $p --seconds 10,60 --repeat 10 | tail -2
  timeout 120 "$R" parakeet bench $arch --precision $p --seconds 10 --batch 32 --repeat 3 | tail -1
  timeout 60 "$R" parakeet bench $arch --precision $p --encoder-frames 592 --repeat 20
  timeout 120 "$R" parakeet bench $arch --precision $p --seconds 10,60 --compare-cpu
done
for p in fp32 bf16; do
  for c in 2 7; do
    for n in 1 64; do
      timeout 150 "$R" parakeet bench $arch --precision $p --stream cache-aware --chunk-size $c --left-chunks $((70 / c)) \
        --stream-seconds 20 --streams $n
    done
  done
  for n in 1 64; do
    timeout 150 "$R" parakeet bench $arch --precision $p --stream windowed --left-secs 10 --chunk-secs 2 --right-secs 2 \
      --stream-seconds 30 --streams $n
  done
done
} 2>&1 | tee "$out/bench.txt"
