#!/usr/bin/env bash
# `make run`: start the control plane (replicas as local processes) and one
# data plane on :5000 from the binaries `make static` built. Ctrl-C stops
# everything.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_PLANE_LISTEN=${DATA_PLANE_LISTEN:-0.0.0.0:5000}
CONTROL_HTTP=${CONTROL_HTTP:-127.0.0.1:5100}
CONTROL_GRPC=${CONTROL_GRPC:-127.0.0.1:50051}
METRICS=${METRICS:-127.0.0.1:9100}
CONTROL_METRICS=${CONTROL_METRICS:-127.0.0.1:9101}
REPLICAS=${REPLICAS:-3}

bin=${1:?usage: run.sh <dir with the release binaries> (make run passes it)}

pids=()
stop() {
  trap - INT TERM EXIT
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop INT TERM EXIT

ready=$(mktemp)
"$bin/control-plane" --http-listen "$CONTROL_HTTP" --grpc-listen "$CONTROL_GRPC" \
  --replicas "$REPLICAS" --replica-bin "$bin/replica" --metrics-listen "$CONTROL_METRICS" --announce >"$ready" &
pids+=($!)
for _ in $(seq 1 200); do
  grep -q '^ready' "$ready" && break
  kill -0 "${pids[0]}" 2>/dev/null || { echo "control plane failed to start" >&2; exit 1; }
  sleep 0.05
done
rm -f "$ready"

"$bin/data-plane" --listen "$DATA_PLANE_LISTEN" --control-plane-grpc "http://$CONTROL_GRPC" \
  --control-plane-http "$CONTROL_HTTP" --metrics-listen "$METRICS" &
pids+=($!)

port=${DATA_PLANE_LISTEN##*:}
cat <<MSG

  ringlb is running
    data plane      http://localhost:$port        (load balancer)
    control plane   http://$CONTROL_HTTP          (HTTP admin: /rep /add /rm /config)
                    $CONTROL_GRPC                 (gRPC: grpcurl -plaintext $CONTROL_GRPC list)
    metrics         http://$METRICS/metrics (data plane), http://$CONTROL_METRICS/metrics (control plane)
    live ring page  http://$CONTROL_HTTP/ui
    admin CLI       $bin/ringctl --addr $CONTROL_GRPC status

  try
    curl localhost:$port/home
    curl localhost:$port/rep
    curl -X POST localhost:$port/add -d '{"n": 2, "hostnames": ["S5"]}'
    curl -X DELETE localhost:$port/rm -d '{"n": 1, "hostnames": ["S5"]}'
    $bin/ringctl --addr $CONTROL_GRPC add 2          (watch http://$CONTROL_HTTP/ui)
    $bin/ringctl --addr $CONTROL_GRPC watch

  Ctrl-C stops everything.

MSG
wait -n "${pids[@]}"
