#!/bin/bash
# The same-host ipc data plane against the bare grpcio floor and jupyter_deploy over gRPC, in one
# run, interleaved (floor, ipc, grpc, then again), with the peers' driver (../shared/peers).
#
#   bash bench/ipc_peers.sh [ROUNDS] [WORKLOADS]      # defaults: 2 rounds, W1a,W1b,W2,W3
#
# jupyter_deploy runs this checkout (PYTHONPATH); "grpc" is the same code with
# JUPYTER_DEPLOY_DATA_PLANE=grpc (what a remote caller gets). Results: $OUT (default
# /tmp/ipc-peers), one results file per system; the load average is printed at each round.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# ../shared/peers beside the checkout (a worktree one level deeper: ../../shared/peers)
PEERS=${PEERS:-$( [ -d "$ROOT/../shared/peers" ] && echo "$ROOT/../shared/peers" || echo "$ROOT/../../shared/peers")}
FLOOR_PY=${FLOOR_PY:-/tmp/peers-venvs/grpc/bin/python}
ROUNDS=${1:-2}
WORKLOADS=${2:-W1a,W1b,W2,W3}
OUT=${OUT:-/tmp/ipc-peers}
mkdir -p "$OUT"
cd "$PEERS"
for r in $(seq "$ROUNDS"); do
  echo "== round $r $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
  PEERS_OUT=$OUT/floor.json "$FLOOR_PY" run.py --system grpc_floor --workloads "$WORKLOADS" --repeats 1 | grep "^  "
  PYTHONPATH=$ROOT PEERS_OUT=$OUT/ipc.json python run.py --system jupyter_deploy --workloads "$WORKLOADS" \
    --repeats 1 | grep "^  " | sed 's/jupyter_deploy /jd-ipc         /'
  JUPYTER_DEPLOY_DATA_PLANE=grpc PYTHONPATH=$ROOT PEERS_OUT=$OUT/grpc.json python run.py --system jupyter_deploy \
    --workloads "$WORKLOADS" --repeats 1 | grep "^  " | sed 's/jupyter_deploy /jd-grpc        /'
done
echo "== end $(date -u +%T) load $(cut -d' ' -f1-3 /proc/loadavg)"
