#!/usr/bin/env bash
# Builds the streamer image with buildah (scripts/image-build.sh: the runtime stage for real,
# the binary from the workspace's release build through the `prebuilt` target) in a private
# vfs storage, then checks it:
#   - the image config: non-root numeric USER, the exec-form HEALTHCHECK, the entrypoint;
#   - the binary in the image is byte for byte the workspace's `streamer` (sha256) and runs
#     there (`streamer --version`) as a non-root user, with the CA store, without ffmpeg;
#   - a short publish: `streamer serve --output dir:/tmp/hls` inside the image (host network,
#     chroot isolation), its channel in a DynamoDB table on moto, host ffmpeg publishes 6 s over
#     RTMP with a signed push URL; `streamer healthcheck` in the image answers 0 while it
#     serves; the ended playlist's first segment is ffprobed (H.264 + AAC).
# Root only (buildah's chroot isolation). Everything it starts has a timeout; the storage
# is removed at the end. Environment: as scripts/image-build.sh; KEEP_IMAGE_STORAGE=1 keeps it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "image-test runs as root (buildah with chroot isolation)" >&2; exit 1; }
# The channel table lives on a private moto server.
if [ -z "${IMAGE_TEST_UNDER_MOTO:-}" ]; then
  IMAGE_TEST_UNDER_MOTO=1 exec "$root/scripts/with-moto.sh" "$0" "$@"
fi
venv=${VENV:-$root/.venv}
started=$SECONDS
log() { printf '==> [%3ds] %s\n' $((SECONDS - started)) "$*" >&2; }
fail() { echo "image-test: FAIL: $*" >&2; exit 1; }

work=$(mktemp -d /var/tmp/streamstack-image-test.XXXXXX)
export BUILDAH_ROOT=$work/storage BUILDAH_RUNROOT=$work/run
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
buildah=(buildah --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT" --storage-driver vfs)
bah() { "${buildah[@]}" "$@"; }
tag=localhost/streamstack-streamer:image-test
serve_pid=
cleanup() {
  if [ -n "$serve_pid" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; fi
  if [ -z "${KEEP_IMAGE_STORAGE:-}" ]; then
    bah rm --all >/dev/null 2>&1 || true
    bah rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$work"
  else
    echo "storage kept: buildah --root $BUILDAH_ROOT --runroot $BUILDAH_RUNROOT images" >&2
  fi
}
trap cleanup EXIT

log "building the image"
"$root/scripts/image-build.sh" "$tag"
bin=${CARGO_TARGET_DIR:-$root/target}/release/streamer
log "built $tag ($(bah images --format '{{.Size}}' "$tag"))"

log "image config"
bah inspect --type image "$tag" >"$work/inspect.json"
python3 - "$work/inspect.json" <<'PY' || fail "image config"
import json, sys
cfg = json.load(open(sys.argv[1]))["Docker"]["config"]
errors = []
user = (cfg.get("User") or "").split(":")[0]
if user in ("", "0", "root") or not user.isdigit():
    errors.append(f"USER {cfg.get('User')!r}: want a numeric non-root uid")
hc = (cfg.get("Healthcheck") or {}).get("Test")
if hc != ["CMD", "/usr/local/bin/streamer", "healthcheck"]:
    errors.append(f"HEALTHCHECK {hc!r}")
if cfg.get("Entrypoint") != ["/usr/local/bin/streamer"]:
    errors.append(f"ENTRYPOINT {cfg.get('Entrypoint')!r}")
ports = set(cfg.get("ExposedPorts") or {})
if ports != {"1935/tcp", "9000/udp", "8080/tcp"}:
    errors.append(f"EXPOSE {sorted(ports)}")
if "HEALTH_LISTEN=0.0.0.0:8080" not in cfg.get("Env", []):
    errors.append("HEALTH_LISTEN=0.0.0.0:8080 not in ENV")
for e in errors:
    print("  " + e, file=sys.stderr)
print(f"  USER {cfg['User']}, HEALTHCHECK {' '.join(hc[1:]) if hc else None}, EXPOSE {' '.join(sorted(ports))}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

ctr=$(bah from --quiet --pull-never "$tag")
mnt=$(bah mount "$ctr")
run() { timeout 30 "${buildah[@]}" run "$@"; }

log "the binary is the workspace's"
want=$(sha256sum <"$bin" | cut -d' ' -f1)
got=$(sha256sum <"$mnt/usr/local/bin/streamer" | cut -d' ' -f1)
[ "$want" = "$got" ] || fail "image binary $got is not $bin ($want)"
echo "  sha256 $got = $bin" >&2
version=$(run "$ctr" -- /usr/local/bin/streamer --version)
[ "$version" = "$("$bin" --version)" ] || fail "streamer --version in the image: $version"
echo "  in the image: $version" >&2
uid=$(run "$ctr" -- id -u)
[ "$uid" != 0 ] || fail "the image runs as root"
echo "  runs as uid $uid" >&2
[ -s "$mnt/etc/ssl/certs/ca-certificates.crt" ] || fail "no CA bundle in the image"
if find "$mnt/usr" -name 'ffmpeg*' -type f | grep -q .; then fail "ffmpeg in the image"; fi
[ ! -e "$mnt/var/lib/apt/lists/lock" ] && [ -z "$(ls "$mnt/var/lib/apt/lists" 2>/dev/null)" ] \
  || fail "apt lists left in the image"

log "short publish into streamer serve in the image"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rtmp_port=$(free_port)
health_port=$(free_port)
table=image-test-channels
channel=image-test
read -r exp sig < <("$venv/bin/python" - "$table" "$channel" <<'PY'
import boto3, datetime, hashlib, hmac, secrets, sys, time
table, cid = sys.argv[1:]
ddb = boto3.client("dynamodb")
ddb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                 AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"},
                                       {"AttributeName": "lease_owner", "AttributeType": "S"}],
                 KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                 GlobalSecondaryIndexes=[{"IndexName": "lease-owner-index",
                                          "KeySchema": [{"AttributeName": "lease_owner", "KeyType": "HASH"}],
                                          "Projection": {"ProjectionType": "KEYS_ONLY"}}])
secret = secrets.token_bytes(32)
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
ts = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
ddb.put_item(TableName=table, Item={
    "id": {"S": cid}, "name": {"S": "image test"}, "description": {"S": ""},
    "segment_duration": {"N": "2"}, "playlist_window": {"N": "10"}, "recording": {"BOOL": False},
    "expires_at": {"S": ts(now + datetime.timedelta(days=1))}, "state": {"S": "idle"},
    "created_at": {"S": ts(now)}, "updated_at": {"S": ts(now)}, "version": {"N": "1"},
    "secret": {"S": secret.hex()}})
# The push URL's signature (functions/core/src/signing.rs): HMAC-SHA256 over "<id>\n<exp>".
exp = int(time.time()) + 600
print(exp, hmac.new(secret, f"{cid}\n{exp}".encode(), hashlib.sha256).hexdigest())
PY
)
# Not through run(): $! must be timeout's pid, which passes SIGTERM on to buildah and on to
# the streamer.
timeout 120 "${buildah[@]}" run \
  --env "AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" --env AWS_ACCESS_KEY_ID=testing \
  --env AWS_SECRET_ACCESS_KEY=testing --env AWS_REGION=us-east-1 --env AWS_EC2_METADATA_DISABLED=true \
  --env "CHANNELS_TABLE=$table" --env STREAMSTACK_LOG_JSON=0 \
  --env "HEALTH_LISTEN=127.0.0.1:$health_port" --env STREAMER_DRAIN_SECS=10 \
  "$ctr" -- /usr/local/bin/streamer serve --listen "127.0.0.1:$rtmp_port" --no-srt \
  --output dir:/tmp/hls --spool-dir /tmp/spool >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$rtmp_port") 2>/dev/null && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log" >&2; fail "streamer serve exited"; }
  sleep 0.2
done
(exec 3<>"/dev/tcp/127.0.0.1/$rtmp_port") 2>/dev/null || { cat "$work/serve.log" >&2; fail "no RTMP listener"; }
run "$ctr" -- /usr/local/bin/streamer healthcheck --url "http://127.0.0.1:$health_port/healthz" \
  || { cat "$work/serve.log" >&2; fail "streamer healthcheck in the image: not healthy while serving"; }
echo "  streamer healthcheck: healthy" >&2
if run "$ctr" -- /usr/local/bin/streamer healthcheck --url "http://127.0.0.1:$(free_port)/healthz" 2>/dev/null; then
  fail "streamer healthcheck: exit 0 with nothing listening"
fi
timeout 60 ffmpeg -nostdin -hide_banner -loglevel error -re \
  -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 -t 6 \
  -c:v libx264 -preset ultrafast -tune zerolatency -g 50 -pix_fmt yuv420p -c:a aac -b:a 64k \
  -f flv "rtmp://127.0.0.1:$rtmp_port/live/$channel?exp=$exp&sig=$sig" \
  || { cat "$work/serve.log" >&2; fail "ffmpeg publish"; }
playlist=$mnt/tmp/hls/live/$channel/index.m3u8
for _ in $(seq 1 100); do
  grep -qs '#EXT-X-ENDLIST' "$playlist" && break
  sleep 0.2
done
grep -qs '#EXT-X-ENDLIST' "$playlist" || { cat "$work/serve.log" "$playlist" >&2; fail "no ended playlist at /tmp/hls/live/$channel"; }
first=$(grep -v '^#' "$playlist" | head -n1)
streams=$(timeout 30 ffprobe -v error -show_entries stream=codec_name -of csv=p=0 "$(dirname "$playlist")/$first" | grep . | sort -u | tr '\n' ' ')
[ "$streams" = "aac h264 " ] || fail "first segment $first: streams '$streams'"
duration=$(timeout 30 ffprobe -v error -show_entries format=duration -of csv=p=0 "$playlist")
echo "  $(grep -c '^#EXTINF' "$playlist") segments, ${duration%.*} s; $first: $streams" >&2
kill -TERM "$serve_pid" 2>/dev/null || true
wait "$serve_pid" 2>/dev/null || true
serve_pid=
log "ok: $tag built and checked"
