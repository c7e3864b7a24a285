#!/usr/bin/env bash
# Runs a command with a private moto server (AWS emulator) on a free 127.0.0.1 port:
# exports AWS_ENDPOINT_URL and dummy credentials, and stops moto when the command ends.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$here/.venv}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp -t moto.XXXXXX.log)
"$venv/bin/python" "$here/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null; wait $moto_pid 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1; then break; fi
  if ! kill -0 $moto_pid 2>/dev/null; then cat "$log" >&2; echo "moto failed to start" >&2; exit 1; fi
  sleep 0.2
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
# Python with botocore (moto depends on it), for tests that check requests against AWS models.
export STREAMSTACK_PYTHON="$venv/bin/python"
echo "moto listening on $AWS_ENDPOINT_URL" >&2
"$@"
