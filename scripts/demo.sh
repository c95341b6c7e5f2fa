#!/usr/bin/env bash
# The demo command: installs missing packages (apt-get), builds in Release, starts the stack on
# an embedded default and prints examples to paste. Ctrl-C stops everything it started.
#
#   tfs-sim --device cpu  on 127.0.0.1:${TFGATE_DEMO_CPU_PORT:-8600}  (half_plus_two, half_plus_three)
#   tfs-sim --device gpu  on 127.0.0.1:${TFGATE_DEMO_GPU_PORT:-8601}  (batching, limited concurrency)
#   tfgate                on 127.0.0.1:${TFGATE_DEMO_PORT:-8501}: pools cpu and gpu,
#                         half_plus_two -> gpu, every other model -> cpu
#
#   scripts/demo.sh --smoke   start, run every printed example, stop (used by the test suite)
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=0
[ "${1:-}" = "--smoke" ] && smoke=1

scripts/install-deps.sh
build=${TFGATE_DEMO_BUILD:-build-release}
if [ -z "${TFGATE_DEMO_PREBUILT:-}" ]; then  # the test suite runs the demo on its own build
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DTG_BUILD_TESTS=ON >/dev/null
  cmake --build "$build" -j"$(nproc)" --target tfs-sim tfgate pyproto >/dev/null
fi

run=$(mktemp -d /tmp/tfgate-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$run"
}
trap cleanup EXIT
trap 'echo "demo: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM

# start NAME ARGS...: starts a server in the background, waits for its "listening on" line
# and sets $port to the port it bound (not in a subshell: $pids must keep the PID)
start() {
  local name=$1; shift
  "$@" >"$run/$name.out" 2>"$run/$name.err" &
  pids+=($!)
  for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on [^ ]*:\([0-9]*\).*/\1/p' "$run/$name.out" 2>/dev/null | head -1)
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  echo "demo: $name did not start:" >&2
  cat "$run/$name.err" >&2
  return 1
}

start cpu "$build/tfs-sim" --port "${TFGATE_DEMO_CPU_PORT:-8600}" --device cpu
cpu=$port
start gpu "$build/tfs-sim" --port "${TFGATE_DEMO_GPU_PORT:-8601}" --device gpu
gpu=$port
cat >"$run/tfgate.json" <<JSON
{
  "listen": [{"address": "127.0.0.1:${TFGATE_DEMO_PORT:-8501}"}],
  "pools": {
    "cpu": {"device": "cpu", "targets": ["127.0.0.1:$cpu"]},
    "gpu": {"device": "gpu", "targets": ["127.0.0.1:$gpu"]}
  },
  "routes": [{"model": "half_plus_two", "pool": "gpu"}, {"model": "*", "pool": "cpu"}]
}
JSON
start tfgate "$build/tfgate" --config "$run/tfgate.json"
gw=$port
py=/usr/bin/python3
export TG_PY_DIR=$(cd "$build" && pwd)/py
"$py" examples/grpc_predict.py --frame "$run/predict.grpc" half_plus_two 1 2 5

examples=(
  "$py examples/grpc_predict.py --target 127.0.0.1:$gw half_plus_two 1 2 5"
  "$py examples/grpc_predict.py --target 127.0.0.1:$gw --label stable half_plus_two 1 2 5"
  "$py examples/grpc_predict.py --target 127.0.0.1:$gw half_plus_three 1 2 5"
  "curl -sS --http2-prior-knowledge -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @$run/predict.grpc -o /dev/null -D - http://127.0.0.1:$gw/tensorflow.serving.PredictionService/Predict"
  "curl -sS --http2 -H 'content-type: application/grpc' -H 'te: trailers' --data-binary @$run/predict.grpc -o /dev/null -D - http://127.0.0.1:$gw/tensorflow.serving.PredictionService/Predict"
  "h2load -n 2000 -c 4 -m 16 -d $run/predict.grpc -H 'content-type: application/grpc' -H 'te: trailers' http://127.0.0.1:$gw/tensorflow.serving.PredictionService/Predict"
)

# TF Serving's REST documentation (api_rest.md), unchanged but for the port; each with
# the answer TF Serving gives, which the smoke run checks.
u=http://127.0.0.1:$gw/v1/models
rest=(
  "curl -sS -d '{\"instances\": [1.0, 2.0, 5.0]}' -X POST $u/half_plus_two:predict"
  '"predictions": [2.5, 3.0, 4.5'
  "curl -sS -d '{\"instances\": [1.0, 2.0, 5.0]}' -X POST $u/half_plus_three:predict"
  '"predictions": [3.5, 4.0, 5.5'
  "curl -sS --http2-prior-knowledge -d '{\"inputs\": {\"x\": [1.0, 2.0, 5.0]}}' $u/half_plus_two/versions/123:predict"
  '"outputs": [
        2.5,'
  "curl -sS -d '{\"signature_name\": \"classify_x_to_y\", \"examples\": [{\"x\": 20.0}]}' -X POST $u/half_plus_two:classify"
  '"results": [[["", 12.0]]'
  "curl -sS -d '{\"signature_name\": \"tensorflow/serving/regress\", \"examples\": [{\"x\": 1.0}, {\"x\": 2.0}]}' -X POST $u/half_plus_three:regress"
  '"results": [3.5, 4.0'
  "curl -sS $u/half_plus_two"
  '"state": "AVAILABLE"'
  "curl -sS $u/half_plus_two/metadata"
  '"signature_def"'
  "curl -sS -d '{\"instances\": [1.0, \"x\"]}' -X POST $u/half_plus_two:predict"
  '"error":'
)

cat <<MSG

tfgate demo is running (TG_PY_DIR=$TG_PY_DIR):
  tfgate       127.0.0.1:$gw   (pid ${pids[2]}): half_plus_two -> gpu pool, others -> cpu pool
  tfs-sim cpu  127.0.0.1:$cpu   (pid ${pids[0]})
  tfs-sim gpu  127.0.0.1:$gpu   (pid ${pids[1]})

gRPC examples through the gateway (TF Serving's PredictionService; half_plus_two: x=[1,2,5] -> y=[2.5,3,4.5]):
MSG
for e in "${examples[@]}"; do echo "  TG_PY_DIR=$TG_PY_DIR $e"; done
echo
echo "REST examples (TF Serving's REST API, api_rest.md; HTTP/1.1, or HTTP/2 with --http2-prior-knowledge):"
for ((i = 0; i < ${#rest[@]}; i += 2)); do echo "  ${rest[i]}"; done


if [ $smoke -eq 1 ]; then
  for e in "${examples[@]}"; do
    echo "--- $e"
    bash -c "$e"
  done
  for ((i = 0; i < ${#rest[@]}; i += 2)); do
    echo "--- ${rest[i]}"
    out=$(bash -c "${rest[i]}")
    echo "$out"
    case "$out" in
    *"${rest[i + 1]}"*) ;;
    *)
      echo "demo smoke: expected ${rest[i + 1]}" >&2
      exit 1
      ;;
    esac
  done
  echo "demo smoke: all examples ran"
  exit 0
fi
echo "Ctrl-C to stop."
wait "${pids[@]}"
