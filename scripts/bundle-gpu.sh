#!/usr/bin/env bash
# Packs a CUDA build for a GPU machine that has none of our Debian libraries (Ubuntu 24.04, CUDA 13 driver):
# the `parakeet` program and the test programs, the non-system shared libraries they load, and run.sh, which
# sets LD_LIBRARY_PATH and finds the CUDA math libraries (cuBLAS, cuBLASLt, cuFFT) on that machine (CUDA
# toolkit or PyTorch's nvidia wheels) unless --with-cublas copied them in (about 870 MB: too large to carry by
# default).
#
#   scripts/bundle-gpu.sh [--build DIR] [--out DIR] [--with-cublas]
#   -> DIR/parakeet-gpu/ and DIR/parakeet-gpu.tar.xz (defaults: build/cuda, build/gpu-bundle)
#
# On the GPU machine: tar xf parakeet-gpu.tar.xz -C /tmp && /tmp/parakeet-gpu/run.sh PROGRAM [ARGS...]
# where PROGRAM is parakeet or a test program name (parakeet_cuda_tests, parakeet_models_tests, ...).
set -euo pipefail

build=build/cuda
out=build/gpu-bundle
with_cublas=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --build) build=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --with-cublas) with_cublas=1; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "bundle-gpu.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

[[ -x $build/parakeet ]] || { echo "bundle-gpu.sh: no $build/parakeet (build it first)" >&2; exit 1; }
dest=$out/parakeet-gpu
rm -rf "$dest" "$out/parakeet-gpu.tar.xz"
mkdir -p "$dest/bin" "$dest/lib"

programs=("$build/parakeet")
for t in "$build"/tests/parakeet_*_tests; do [[ -x $t ]] && programs+=("$t"); done

# Libraries every Linux has (glibc, the C++ runtime) or that belong to the driver: never copied.
system_lib='^(linux-vdso|ld-linux|libc|libm|libmvec|libdl|librt|libpthread|libresolv|libutil|libstdc\+\+|libgcc_s|libcuda|libnvidia-.*)\.so'
# CUDA math libraries: found on the GPU machine by run.sh unless --with-cublas.
cuda_math_lib='^lib(cublas|cublasLt|cufft)\.so'

declare -A seen=()
external=()
for prog in "${programs[@]}"; do
    cp "$prog" "$dest/bin/"
    strip --strip-unneeded "$dest/bin/$(basename "$prog")" 2>/dev/null || true
    while read -r name path; do
        [[ -n $path && -e $path ]] || continue
        [[ $name =~ $system_lib ]] && continue
        [[ -n ${seen[$name]:-} ]] && continue
        seen[$name]=1
        if [[ $name =~ $cuda_math_lib && $with_cublas -eq 0 ]]; then external+=("$name"); continue; fi
        cp -L "$path" "$dest/lib/$name"
    done < <(ldd "$prog" | awk '/=>/ && $3 ~ /^\// {print $1, $3}')
done
missing=$(for prog in "${programs[@]}"; do ldd "$prog"; done | awk '/not found/ {print $1}' | sort -u)
[[ -z $missing ]] || { echo "bundle-gpu.sh: unresolved here: $missing" >&2; exit 1; }

{
cat <<'RUN'
#!/usr/bin/env bash
# Runs a bundled program with the bundle's libraries; finds the CUDA math libraries that were not bundled
# (`external`, written by bundle-gpu.sh) on this machine: PARAKEET_CUBLAS_DIR / PARAKEET_CUFFT_DIR, the CUDA
# toolkit, or PyTorch's nvidia wheels.
set -euo pipefail
RUN
echo "external=(${external[*]})"
cat <<'RUN'
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ $# -ge 1 ]] || { echo "usage: run.sh PROGRAM [ARGS...]; programs: $(ls "$here/bin" | tr '\n' ' ')" >&2; exit 2; }
prog=$1
shift
libs=$here/lib
if [[ ${#external[@]} -gt 0 ]]; then
    candidates=()
    for d in "${PARAKEET_CUBLAS_DIR:-}" "${PARAKEET_CUFFT_DIR:-}"; do [[ -n $d ]] && candidates+=("$d"); done
    candidates+=(/usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/lib64)
    for py in python3 /opt/torch/.venv/bin/python3; do
        site=$("$py" -c 'import nvidia, os; print(" ".join(nvidia.__path__))' 2>/dev/null || true)
        for d in $site; do candidates+=("$d"/*/lib "$d"/cu13/lib); done
    done
    for lib in "${external[@]}"; do
        dir=
        for d in "${candidates[@]}"; do
            if [[ -e $d/$lib ]]; then dir=$d; break; fi
        done
        [[ -n $dir ]] || { echo "run.sh: $lib not found; set PARAKEET_CUBLAS_DIR or PARAKEET_CUFFT_DIR" >&2; exit 1; }
        [[ :$libs: == *:$dir:* ]] || libs=$libs:$dir
    done
fi
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# Test programs read tiny-a from here when it exists (a copy of the repository as the working directory).
if [[ -z ${PARAKEET_TEST_DATA_DIR:-} && -d $PWD/tests/data ]]; then export PARAKEET_TEST_DATA_DIR=$PWD/tests/data; fi
exec "$here/bin/$prog" "$@"
RUN
} > "$dest/run.sh"
chmod +x "$dest/run.sh"

tar -C "$out" -cJf "$out/parakeet-gpu.tar.xz" parakeet-gpu
echo "bundle: $dest ($(du -sh "$dest" | cut -f1)), archive $out/parakeet-gpu.tar.xz ($(du -h "$out/parakeet-gpu.tar.xz" | cut -f1))"
du -h "$dest"/lib/* | sort -h | tail -5
