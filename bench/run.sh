#!/usr/bin/env bash
# Builds in Release and runs the benchmarks in bench/load. Results are printed (and kept under
# bench/results/, which is not committed); bench/README.md records them with the commit.
#   bench/run.sh            every benchmark
#   bench/run.sh sim        only tfs-sim's throughput
#   bench/run.sh grpc       gRPC passthrough: tfgate vs nginx vs direct, and idle-connection memory
#   bench/run.sh json       JSON <-> tensor micro-benchmark: tfgate's converters vs jansson
#   bench/run.sh rest       REST (HTTP/2 and HTTP/1.1) vs gRPC through tfgate, small and large
#   bench/run.sh auth       CPU per request with JWT (RS256 cached and uncached) vs none
#   bench/run.sh spillover  GPU saturation spillover on vs off under overload
#   bench/run.sh reload     gRPC load with a SIGHUP reload every 100 ms vs none; RSS over reloads
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
  /usr/bin/python3 bench/load/bench_grpc.py --build build-release --plot docs/img/grpc.png \
    | tee bench/results/grpc.md
fi
if [ "$what" = all ] || [ "$what" = json ]; then
  build-release/bench_tensor_json | tee bench/results/json.md
fi
if [ "$what" = all ] || [ "$what" = rest ]; then
  /usr/bin/python3 bench/load/bench_rest.py --build build-release | tee bench/results/rest.md
fi
if [ "$what" = all ] || [ "$what" = auth ]; then
  /usr/bin/python3 bench/load/bench_auth.py --build build-release | tee bench/results/auth.md
fi
if [ "$what" = all ] || [ "$what" = spillover ]; then
  /usr/bin/python3 bench/load/bench_spillover.py --build build-release --plot docs/img/spillover.png \
    | tee bench/results/spillover.md
fi
if [ "$what" = all ] || [ "$what" = reload ]; then
  /usr/bin/python3 bench/load/bench_reload.py --build build-release | tee bench/results/reload.md
fi
