#!/usr/bin/env bash
# Start a local MLflow tracking server for parallel sweeps and team use, then print the
# URI to export. Usage (from anywhere):
#
#   bash scripts/tracking_server.sh                  # sqlite backend: one machine
#   BACKEND_URI=postgresql://user:pw@db/mlflow ARTIFACTS=s3://bucket/mlflow \
#     HOST=0.0.0.0 PORT=5000 bash scripts/tracking_server.sh     # a team: any SQLAlchemy URI
#   bash scripts/tracking_server.sh stop
#
# The server runs in the background (log and pid in .mlflow-server/), stores runs in
# BACKEND_URI (default sqlite:///<repo>/.mlflow-server/mlflow.db) and proxies artifacts
# to ARTIFACTS (default <repo>/.mlflow-server/artifacts), so clients need no access to
# the artifact store. Then `export MLFLOW_TRACKING_URI=...` (printed below) and run
# `dvc exp run --queue ...; dvc queue start -j N`: every stage of every worker logs there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DIR="$ROOT/.mlflow-server"
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-5000}"
mkdir -p "$DIR"
if [[ "${1:-}" == "stop" ]]; then
  [[ -f "$DIR/pid" ]] && kill "$(cat "$DIR/pid")" 2>/dev/null && rm -f "$DIR/pid" && echo "stopped" || echo "not running"
  exit 0
fi
BACKEND_URI="${BACKEND_URI:-sqlite:///$DIR/mlflow.db}"
ARTIFACTS="${ARTIFACTS:-$DIR/artifacts}"
# MLflow's job runner and its queue consumers (7 processes) serve GenAI jobs; the pipeline runs none.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
nohup "$ROOT/.venv/bin/mlflow" server --host "$HOST" --port "$PORT" --backend-store-uri "$BACKEND_URI" \
  --artifacts-destination "$ARTIFACTS" --workers "${WORKERS:-2}" > "$DIR/server.log" 2>&1 &
echo $! > "$DIR/pid"
for _ in $(seq 1 120); do
  if "$ROOT/.venv/bin/python" -c "import socket; socket.create_connection(('$HOST', $PORT), 1).close()" 2>/dev/null; then
    URI_HOST="$HOST"; [[ "$HOST" == "0.0.0.0" ]] && URI_HOST="$(hostname)"
    echo "MLflow server running (pid $(cat "$DIR/pid"), log $DIR/server.log), backend $BACKEND_URI"
    echo "export MLFLOW_TRACKING_URI=http://$URI_HOST:$PORT"
    echo "its UI (Model training view): http://$URI_HOST:$PORT/#/experiments?workflowType=machine_learning"
    exit 0
  fi
  if ! kill -0 "$(cat "$DIR/pid")" 2>/dev/null; then
    echo "error: the MLflow server exited; see $DIR/server.log" >&2
    tail -5 "$DIR/server.log" >&2
    exit 2
  fi
  sleep 1
done
echo "error: the MLflow server did not answer on $HOST:$PORT within 120 s; see $DIR/server.log" >&2
exit 2
