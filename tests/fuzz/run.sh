#!/bin/sh
# Builds the fuzzers (libFuzzer + ASan + UBSan) of the wire decoder and of the model file
# reader and runs each for a bounded time.
#   tests/fuzz/run.sh [SECONDS]        (default 60, per fuzzer; run from anywhere)
# Needs clang and libFuzzer's runtime (Debian: clang, libclang-rt-*-dev).  Crashes, if any,
# are written to tests/fuzz/build/ as crash-* files and the script exits non-zero.
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=tests/fuzz/build
mkdir -p "$out" "$out/corpus" "$out/corpus_model"
CC=${CC:-}
if [ -z "$CC" ]; then
  for c in clang clang-15 clang-14 clang-16 clang-17 clang-18; do
    if command -v "$c" >/dev/null 2>&1; then CC=$c; break; fi
  done
fi
[ -n "$CC" ] || { echo "run.sh: no clang found" >&2; exit 2; }
# clang-N looks for libFuzzer under its own resource dir; fall back to another installed one
fuzz_flags="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
if ! echo 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}' |
     "$CC" $fuzz_flags -x c - -o "$out/probe" 2>/dev/null; then
  for rd in /usr/lib/llvm-*/lib/clang/*; do
    if ls "$rd"/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
      fuzz_flags="$fuzz_flags -resource-dir=$rd"; break
    fi
  done
fi
wire="csrc/core/mpscan.c csrc/wire/wire.c csrc/wire/decode.c"
src="csrc/core/status.c $wire"
inc="-Icsrc/include -Icsrc"
libs="-lmsgpackc -lzstd -lm"
# the seeds come from the real encoder (built with the project's compiler)
${HOSTCC:-cc} -std=gnu11 -O1 -g -fopenmp $inc -o "$out/make_corpus" tests/fuzz/make_corpus.c \
  $src $libs
"$out/make_corpus" tests/fuzz/corpus
# status.c includes <omp.h>, which clang may lack (no libomp): build it with the project's
# compiler, uninstrumented (it only formats error text), and link libgomp
${HOSTCC:-cc} -std=gnu11 -O1 -g -fopenmp $inc -c csrc/core/status.c -o "$out/status.o"
"$CC" -std=gnu11 -O1 -g $fuzz_flags $inc -o "$out/fuzz_decode" tests/fuzz/fuzz_decode.c \
  $wire "$out/status.o" $libs -lgomp
# the model reader's shape rules come from the table of layer types, whose rows also name
# the oneDNN ops: those (and the plan code they call) are built uninstrumented, as status.c
venv=${VENV:-.venv}
dnnl="-I$venv/include"
objs=""
for f in csrc/core/plan.c csrc/core/dnnl_util.c csrc/core/train.c csrc/core/profile.c \
         csrc/ops/*.c; do
  o="$out/$(basename "$f" .c).o"
  ${HOSTCC:-cc} -std=gnu11 -O1 -g -fopenmp $inc $dnnl -c "$f" -o "$o"
  objs="$objs $o"
done
"$CC" -std=gnu11 -O1 -g $fuzz_flags $inc $dnnl -o "$out/fuzz_model" tests/fuzz/fuzz_model.c \
  csrc/core/model.c csrc/core/spec.c csrc/core/layers.c csrc/core/mpscan.c "$out/status.o" \
  $objs -L"$venv/lib" -Wl,-rpath,"$(cd "$venv/lib" && pwd)" -ldnnl -lmsgpackc -lm -lgomp
# new inputs go to build/corpus*; the committed seeds stay as they are (the model seeds
# are written by tests/fuzz/make_model_corpus.py)
"$out/fuzz_decode" -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048 \
  -artifact_prefix="$out/" "$out/corpus" tests/fuzz/corpus
"$out/fuzz_model" -max_total_time="$secs" -max_len=16384 -rss_limit_mb=2048 \
  -artifact_prefix="$out/model-" "$out/corpus_model" tests/fuzz/corpus_model
