#!/bin/sh
# Build kvcy's Cython extensions for coverage-guided fuzzing with
# AddressSanitizer, in a copy of the tree (never in the working tree: the
# test suite checks that its own extensions are the plain build).
#
#   sh tests/fuzz/build_instrumented.sh /tmp/kvcy-asan
#
# Needs clang (apt-get install clang) and atheris.  The copy's extensions
# report coverage of the C code to libFuzzer (-fsanitize=fuzzer-no-link)
# and stop at the first out-of-bounds access (-fsanitize=address).  The
# run command is printed at the end; docs/fuzzing.md explains it.
set -eu
dest=${1:?usage: build_instrumented.sh DEST_DIR}
src=$(cd "$(dirname "$0")/../.." && pwd)
python=${PYTHON:-python3}
mkdir -p "$dest"
cp -r "$src/setup.py" "$src/pyproject.toml" "$src/README.md" "$src/kvcy" "$dest/"
rm -f "$dest"/kvcy/*.so
cd "$dest"
CC=clang LDSHARED="clang -shared" \
    CFLAGS="-fsanitize=address,fuzzer-no-link -g -O1" \
    LDFLAGS="-fsanitize=address,fuzzer-no-link" \
    "$python" setup.py -q build_ext --inplace
asan=$("$python" -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))')
echo "built in $dest; run a target with:"
echo "  cd $dest && LD_PRELOAD=$asan ASAN_OPTIONS=detect_leaks=0 \\"
echo "      PYTHONPATH=$dest:$src $python -m tests.fuzz TARGET --time 600"
