#!/usr/bin/env bash
# Contract fuzzing of the channel API (`make contract-test`, part of `make test`): a private
# moto with the local stack's tables (scripts/local_resources.py) and a signing key, the API
# (`channels-api-local`, built beforehand) on a free 127.0.0.1 port, then schemathesis (pinned
# in the venv by `make tools`) against the document the API serves at /openapi.json: every
# operation, examples + coverage + fuzzing + stateful phases (the document's links:
# create -> get -> patch -> delete), a bounded number of examples per operation and a fixed
# seed. Fails on any 5xx, any response (status, headers, body, content type) that violates
# the document, and any schema-violating request that is accepted.
# Environment: CONTRACT_MAX_EXAMPLES (default 100), CONTRACT_SEED (default 1515),
# CONTRACT_REPORT_DIR (schemathesis reports: JUnit XML and a pytest reproduction file;
# default .schemathesis/report),
# CARGO_TARGET_DIR (where channels-api-local was built) or API_BIN (its path), VENV.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
bin=${CARGO_TARGET_DIR:-$root/target}/debug
work=$(mktemp -d -t contract.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
moto_port=$(free_port)
api_port=$(free_port)

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
wait_http() { # url what log
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  cat "$3" >&2; echo "$2 did not start" >&2; exit 1
}

export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export CHANNELS_TABLE=contract-channels ASSETS_TABLE=contract-assets DEVICES_TABLE=contract-devices
export SLOTS_TABLE=contract-slots MEDIA_BUCKET=contract-media
export MEDIA_URL_KEY=00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff
export INGEST_HOST=127.0.0.1:1935 INGEST_SRT_HOST=127.0.0.1:9000 INGEST_RTMPS_HOST=127.0.0.1:1936
export PLAYBACK_BASE_URL=http://127.0.0.1:8088 PLAYBACK_KEY_PAIR_ID=KCONTRACTTEST
export RUST_LOG=${RUST_LOG:-warn}

"$venv/bin/python" "$root/scripts/moto_server.py" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
wait_http "$AWS_ENDPOINT_URL/moto-api/" moto "$work/moto.log"

# A throwaway playback key pair, so signed channels and devices (and their credentials) are
# part of the contract too.
mkdir -p "$work/keys"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/keys/private.pem" 2>/dev/null
KEYS=$work/keys STATE=$work "$venv/bin/python" "$root/scripts/local_resources.py"
# Two assets as the VOD functions store them (the API only reads assets): a signed COMPLETE
# one (outputs, playback credentials) and a public ERROR one.
"$venv/bin/python" - <<'PY'
import boto3, os
ddb = boto3.client("dynamodb")
def s(v): return {"S": v}
def n(v): return {"N": str(v)}
common = {"created_at": s("2026-11-24T08:00:00Z"), "updated_at": s("2026-11-24T08:05:00Z")}
ddb.put_item(TableName=os.environ["ASSETS_TABLE"], Item={**common,
    "id": s("0123456789abcdef0123456789abcdef"), "status": s("COMPLETE"),
    "source": {"M": {"bucket": s("contract-media"), "key": s("inputs/film.mp4"), "version_id": s("v1"), "size": n(1048576)}},
    "settings": {"M": {"ladder": s("default"), "segment_length": n(6), "thumbnail_interval": n(10), "playback": s("signed")}},
    "job_id": s("1700000000000-abcdef"), "progress_percent": n(100),
    "outputs": {"M": {"hls_master_key": s("signed/outputs/0123456789abcdef0123456789abcdef/hls/film.m3u8"),
        "renditions": {"L": [{"M": {"width": n(640), "height": n(360), "average_bitrate": n(800000),
            "playlist_key": s("signed/outputs/0123456789abcdef0123456789abcdef/hls/film_360.m3u8")}}]},
        "mp4_key": s("signed/outputs/0123456789abcdef0123456789abcdef/mp4/film.mp4"),
        "thumbnail_keys": {"L": [s("signed/outputs/0123456789abcdef0123456789abcdef/thumbnails/film.0000000.jpg")]},
        "duration_ms": n(12000)}}})
ddb.put_item(TableName=os.environ["ASSETS_TABLE"], Item={**common,
    "id": s("fedcba9876543210fedcba9876543210"), "status": s("ERROR"),
    "source": {"M": {"bucket": s("contract-media"), "key": s("inputs/broken.mov"), "size": n(42)}},
    "error": {"M": {"code": s("SourceMissing"), "message": s("the source object is gone")}}})
PY
PLAYBACK_PRIVATE_KEY_SECRET_ARN=$(cat "$work/playback-secret-arn")
export PLAYBACK_PRIVATE_KEY_SECRET_ARN

"${API_BIN:-$bin/channels-api-local}" --listen "127.0.0.1:$api_port" >"$work/api.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$api_port/openapi.json" channels-api-local "$work/api.log"

# The API serves the document this checkout generates (else: `make openapi`, or a stale binary).
if ! curl -fsS "http://127.0.0.1:$api_port/openapi.json" | cmp -s - "$root/docs/openapi.json"; then
  echo "the API serves another document than docs/openapi.json: run \`make openapi\` (and rebuild channels-api-local)" >&2
  exit 1
fi

report_dir=${CONTRACT_REPORT_DIR:-$root/.schemathesis/report}
start=$(date +%s)
status=0
# One worker: with two, hypothesis' lambda descriptions (ast.parse in threads) can fail on
# CPython 3.11 ("AST constructor recursion depth mismatch"), a runtime error of the harness.
# Checks: everything about conformance and robustness; not `positive_data_acceptance` (a
# schema-valid If-Match is still stale: 412 is the contract), nor the auth checks (IAM is
# API Gateway's, outside the document).
# Bounded in time as well as in examples: 10 minutes at most (about 1 minute here).
timeout 600 "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" run "http://127.0.0.1:$api_port/openapi.json" \
  --checks all \
  --exclude-checks positive_data_acceptance,ignored_auth,object_level_authorization \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "${CONTRACT_MAX_EXAMPLES:-100}" \
  --seed "${CONTRACT_SEED:-1515}" \
  --generation-database none \
  --workers 1 \
  --request-timeout 10 \
  --continue-on-failure \
  --report junit,pytest --report-dir "$report_dir" \
  --no-color || status=$?
echo "contract test: schemathesis exited $status after $(( $(date +%s) - start )) s" >&2
if grep -q "panicked" "$work/api.log"; then
  grep -B2 -A5 "panicked" "$work/api.log" >&2
  status=1
fi
exit "$status"
