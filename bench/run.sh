#!/usr/bin/env bash
# Builds in Release and runs the benchmarks in bench/load. Results are printed (and kept under
# bench/results/, which is not committed); bench/README.md records them with the commit.
#   bench/run.sh            every benchmark
#   bench/run.sh sim        only tfs-sim's throughput
#   bench/run.sh grpc       gRPC passthrough: tfgate vs nginx vs direct, and idle-connection memory
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --bench
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build-release -j"$(nproc)" >/dev/null
mkdir -p bench/results
what=${1:-all}
if [ "$what" = all ] || [ "$what" = sim ]; then
  /usr/bin/python3 bench/load/bench_sim.py --build build-release | tee bench/results/sim.md
fi
if [ "$what" = all ] || [ "$what" = grpc ]; then
  /usr/bin/python3 bench/load/bench_grpc.py --build build-release | tee bench/results/grpc.md
fi
