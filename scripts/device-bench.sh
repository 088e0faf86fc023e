#!/usr/bin/env bash
# The GPU measurements of docs/PERFORMANCE.md and docs/PARITY.md, run on the GPU machine from the repo root after
# unpacking the bundle of scripts/bundle-gpu.sh. Writes its logs to ${OUT:-/tmp/pk-out}.
#   scripts/device-bench.sh /path/to/parakeet-gpu/run.sh [SECTION...]
# Sections (default: all but torch, ncu and ab): tests offline encoder stream capacity windowed compare torch ncu ab
# Section ab: the key batch-1 and small-batch cases, each run without and then with the environment switch in
# AB_ENV (e.g. AB_ENV=PARAKEET_NO_TILE_LINEAR=1), twice, so that an A/B comes from one machine minutes apart.
set -u
R=${1:?usage: device-bench.sh RUN_SH [SECTION...]}
shift
sections=${*:-tests offline encoder stream capacity windowed compare}
out=${OUT:-/tmp/pk-out}
mkdir -p "$out"
arch="--arch parakeet-tdt-0.6b-v3 --random-weights --device cuda --threads 16"
has() { [[ " $sections " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"

if has tests; then
  timeout 300 "$R" parakeet_cuda_tests 2>&1 | grep -E "measured|FAILED|PASSED|Failure" > "$out/cuda_tests.txt"
fi
{
if has offline; then
  for p in fp32 tf32 fp16 bf16; do
    echo "== offline $p"
    timeout 120 "$R" parakeet bench $arch --precision $p --seconds 10,60 --repeat 5 | tail -2
    for b in 32 64; do
      timeout 120 "$R" parakeet bench $arch --precision $p --seconds 10 --batch $b --repeat 3 | tail -1
    done
  done
fi
if has encoder; then
  for p in fp32 tf32 fp16 bf16; do
    timeout 60 "$R" parakeet bench $arch --precision $p --encoder-frames 592 --repeat 20
  done
fi
if has stream; then
  # Cache-aware: 160 ms (chunk 2) and 560 ms (chunk 7) with a 70-frame left context; per-stream path at one
  # stream for comparison, then batched steps of 1 to 1024 streams.
  for p in bf16 fp32; do
    for c in 2 7; do
      timeout 60 "$R" parakeet bench $arch --precision $p --stream cache-aware --chunk-size $c --left-chunks $((70 / c)) \
        --stream-seconds 10 --streams 1 --no-batch
      for n in 1 64 256 1024; do
        timeout 90 "$R" parakeet bench $arch --precision $p --stream cache-aware --chunk-size $c \
          --left-chunks $((70 / c)) --stream-seconds 10 --streams $n
      done
    done
  done
  # The decode's share of a batched step (decode launched after the graph so that events can split it).
  for n in 1 1024; do
    PARAKEET_DECODE_OUTSIDE_GRAPH=1 timeout 90 "$R" parakeet bench $arch --precision bf16 --stream cache-aware \
      --chunk-size 2 --left-chunks 35 --stream-seconds 10 --streams $n
  done
fi
if has capacity; then
  # 24 s streams: most steps run with full 70-row caches (8 s streams spent a third of their steps filling them, and
  # their ~45 steps made the p99 a maximum).
  timeout 400 "$R" parakeet bench $arch --precision bf16 --stream cache-aware --chunk-size 2 --left-chunks 35 \
    --stream-seconds 24 --streams 1024 --find-streams 4096 --p99-bound-ms 40
fi
if has windowed; then
  # 90 s streams: the p50 of shorter runs still holds the first steps' graph captures.
  for p in fp32 bf16; do
    timeout 150 "$R" parakeet bench $arch --precision $p --stream windowed --left-secs 10 --chunk-secs 2 --right-secs 2 \
      --stream-seconds 90 --streams 1
  done
fi
if has compare; then
  for p in fp32 tf32 fp16 bf16; do
    timeout 120 "$R" parakeet bench $arch --precision $p --seconds 10,60 --compare-cpu
  done
fi
if has ab; then
  ab_env=${AB_ENV:?section ab needs AB_ENV=NAME=VALUE}
  ab_cases=(
    "--precision bf16 --encoder-frames 592 --repeat 20"
    "--precision fp16 --encoder-frames 592 --repeat 20"
    "--precision bf16 --seconds 10 --repeat 5"
    "--precision bf16 --stream windowed --left-secs 10 --chunk-secs 2 --right-secs 2 --stream-seconds 60 --streams 1"
    "--precision bf16 --stream cache-aware --chunk-size 7 --left-chunks 10 --stream-seconds 10 --streams 1"
    "--precision bf16 --stream cache-aware --chunk-size 2 --left-chunks 35 --stream-seconds 10 --streams 64"
  )
  for round in 1 2; do
    for c in "${ab_cases[@]}"; do
      echo "== ab round $round base: $c"
      timeout 150 "$R" parakeet bench $arch $c | tail -2
      echo "== ab round $round $ab_env: $c"
      env "$ab_env" timeout 150 "$R" parakeet bench $arch $c | tail -2
    done
  done
fi
} 2>&1 | tee -a "$out/bench.txt"
if has torch; then
  PYTHONUNBUFFERED=1 timeout 500 python3 tools/reference/torch_bench.py --out "$out/torch-bench.json" --repeat 10 \
    > "$out/torch-bench.txt" 2>&1
fi
if has ncu; then
  # Kernel-time shares of batched steps (warm caches, no clock control); summarise with tools/profile/ncu_summary.py.
  for n in 1 1024; do
    timeout 250 ncu --cache-control none --clock-control none --graph-profiling node --metrics gpu__time_duration.sum \
      --print-summary per-kernel --launch-skip 3000 --launch-count 1400 "$R" parakeet bench $arch --precision bf16 \
      --stream cache-aware --chunk-size 2 --left-chunks 35 --stream-seconds 3 --streams $n > "$out/ncu-bf16-160ms-$n.txt" 2>&1
  done
fi
