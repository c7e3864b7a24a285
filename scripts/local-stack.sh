#!/usr/bin/env bash
# Local streamstack: moto (DynamoDB + S3 + SNS + Secrets Manager) + API + RTMP streamer + the
# device reconciler (devices-local: streamer pull processes in place of ECS tasks) +
# mediaconvert-local (a local MediaConvert rendering jobs with ffmpeg; moto has no
# MediaConvert) + edge-local (playback in front of the bucket, enforcing CloudFront signed
# cookies/URLs on signed/ as CloudFront does), all on 127.0.0.1.
#   scripts/local-stack.sh demo   create a signed channel over HTTP, publish a clip with ffmpeg,
#                                 show playback refused without credentials and authorized
#                                 with the API's signed cookies and signed URL, check the HLS
#                                 output; relay it to an RTMP destination (an ffmpeg listener)
#                                 and egress it (streamer egress) to UDP, check both recordings;
#                                 register a device and heartbeat it
#                                 online, the reconciler starts its task, 8 s of the clip sent
#                                 as UDP MPEG-TS land in the device's live playlist and archive,
#                                 a heartbeat without it stops the task; upload the clip to inputs/, deliver
#                                 its S3 event to the VOD trigger, wait for mediaconvert-local
#                                 to transcode it (job events delivered to the job-state
#                                 function) until the asset is COMPLETE, ffprobe its HLS
#                                 renditions; stop everything
#   scripts/local-stack.sh keep   start the stack and keep it running until Ctrl-C
# Environment: INPUT=path (your own video for the demo), MOTO_PORT (5000), API_PORT (3000),
# RTMP_PORT (1935), MEDIACONVERT_PORT (5001), EDGE_PORT (8088), PULL_UDP_PORT (5004),
# RELAY_PORT (1936), EGRESS_PORT (5006),
# CARGO_TARGET_DIR (where the binaries were built).
set -euo pipefail
mode=${1:-demo}
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-$root/.venv}
bin=${CARGO_TARGET_DIR:-$root/target}/debug
state=$root/.local
moto_port=${MOTO_PORT:-5000}
api_port=${API_PORT:-3000}
rtmp_port=${RTMP_PORT:-1935}
srt_port=${SRT_PORT:-9000}
mc_port=${MEDIACONVERT_PORT:-5001}
edge_port=${EDGE_PORT:-8088}
relay_port=${RELAY_PORT:-1936}
egress_port=${EGRESS_PORT:-5006}
mkdir -p "$state"

export AWS_ENDPOINT_URL=http://127.0.0.1:$moto_port
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
export CHANNELS_TABLE=streamstack-channels MEDIA_BUCKET=streamstack-media
export ASSETS_TABLE=streamstack-assets STACK_NAME=streamstack-local
export DEVICES_TABLE=streamstack-devices SLOTS_TABLE=streamstack-slots
export ALARM_TOPIC_ARN=arn:aws:sns:us-east-1:123456789012:streamstack-alarms
# A fixed demo key (64 hex characters) sealing camera credentials locally; in AWS it is a
# generated Secrets Manager secret.
export MEDIA_URL_KEY=${MEDIA_URL_KEY:-00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff}
export MEDIACONVERT_ENDPOINT=http://127.0.0.1:$mc_port
export MEDIACONVERT_ROLE_ARN=arn:aws:iam::123456789012:role/streamstack-local-mediaconvert
export ASSETS_TOPIC_ARN=arn:aws:sns:us-east-1:123456789012:streamstack-assets
export INGEST_HOST=127.0.0.1:$rtmp_port INGEST_SRT_HOST=127.0.0.1:$srt_port
# Players read through edge-local, as they read through CloudFront in AWS.
export PLAYBACK_BASE_URL=http://127.0.0.1:$edge_port
# The playback key pair (RSA 2048, made once): edge-local trusts the public key under this
# id, as CloudFront's key group does; the API reads the private key from Secrets Manager.
export PLAYBACK_KEY_PAIR_ID=KLOCALPLAYBACK
keys=$state/playback-keys
if [ ! -s "$keys/private.pem" ]; then
  mkdir -p "$keys" && chmod 700 "$keys"
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$keys/private.pem" 2>/dev/null
  openssl pkey -in "$keys/private.pem" -pubout -out "$keys/public.pem"
fi
export RUST_LOG=${RUST_LOG:-info}

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # host port what
  for _ in $(seq 1 150); do
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.2
  done
  echo "$3 did not start; see $state/*.log" >&2; exit 1
}

say "starting moto (DynamoDB + S3 emulator) on $AWS_ENDPOINT_URL"
"$venv/bin/python" "$root/scripts/moto_server.py" -H 127.0.0.1 -p "$moto_port" >"$state/moto.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$moto_port" moto

say "creating tables $CHANNELS_TABLE, $ASSETS_TABLE, $DEVICES_TABLE, $SLOTS_TABLE, bucket $MEDIA_BUCKET and the playback key's secret"
KEYS=$keys STATE=$state "$venv/bin/python" "$root/scripts/local_resources.py"

PLAYBACK_PRIVATE_KEY_SECRET_ARN=$(cat "$state/playback-secret-arn")
export PLAYBACK_PRIVATE_KEY_SECRET_ARN
say "starting edge-local (playback; signed/ needs CloudFront signed cookies or a signed URL) on $PLAYBACK_BASE_URL"
"$bin/edge-local" --listen "127.0.0.1:$edge_port" --bucket "$MEDIA_BUCKET" \
  --key-pair-id "$PLAYBACK_KEY_PAIR_ID" --public-key-file "$keys/public.pem" >"$state/edge.log" 2>&1 &
pids+=($!)
say "starting the channel API on http://127.0.0.1:$api_port"
"$bin/channels-api-local" --listen "127.0.0.1:$api_port" >"$state/api.log" 2>&1 &
pids+=($!)
say "starting the device reconciler (devices-local: streamer pull processes in place of ECS tasks, their stops delivered to the task health handler)"
rm -rf "$state/tasks"
"$bin/devices-local" --streamer "$bin/streamer" --interval 1 --log-dir "$state/tasks" -- \
  --output s3 --segment-duration 2 --recording-segment-duration 6 >"$state/reconciler.log" 2>&1 &
pids+=($!)
say "starting the streamer: rtmp://127.0.0.1:$rtmp_port/live, srt://127.0.0.1:$srt_port"
"$bin/streamer" serve --listen "127.0.0.1:$rtmp_port" --srt-listen "127.0.0.1:$srt_port" --spool-dir "$state/spool" >"$state/streamer.log" 2>&1 &
pids+=($!)
say "starting mediaconvert-local (jobs rendered with ffmpeg, their events delivered to the job-state function) on $MEDIACONVERT_ENDPOINT"
rm -rf "$state/mediaconvert-events"
"$bin/mediaconvert-local" --listen "127.0.0.1:$mc_port" --work-dir "$state/mediaconvert-work" \
  --events-dir "$state/mediaconvert-events" \
  --model-check "$venv/bin/python" "$root/tests/mediaconvert_model_check.py" ';' \
  --on-event "$bin/vod-local" job-event --file >"$state/mediaconvert.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$api_port" "channel API"
wait_port 127.0.0.1 "$mc_port" mediaconvert-local
wait_port 127.0.0.1 "$rtmp_port" streamer
wait_port 127.0.0.1 "$edge_port" edge-local
api=http://127.0.0.1:$api_port

say "POST $api/channels (a signed channel: players need the credentials the API issues)"
channel=$(curl -fsS -X POST "$api/channels" -H 'content-type: application/json' \
  -d '{"name":"demo","description":"make demo","playback":"signed","hls":{"segment_duration":4,"playlist_window":10}}')
echo "$channel"
id=$(printf '%s' "$channel" | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
say "GET $api/channels/$id/endpoints"
endpoints=$(curl -fsS "$api/channels/$id/endpoints")
echo "$endpoints"
field() { printf '%s' "$endpoints" | "$venv/bin/python" -c "import json,sys; d=json.load(sys.stdin); print(d$1)"; }
push_url=$(field '["rtmp"]["push_url"]')
playback_url=$(field '["hls"]["playback_url"]')
signed_playlist_url=$(field '["playback"]["signed_playlist_url"]')
# The signed cookies as one Cookie header value (a web app would set them for the domain).
cookie=$(printf '%s' "$endpoints" | "$venv/bin/python" -c 'import json,sys; c=json.load(sys.stdin)["playback"]["authorization"]["cookies"]; print("; ".join(f"{k}={v}" for k, v in c.items()))')

if [ "$mode" = keep ]; then
  say "stack is running (Ctrl-C stops it)"
  cat <<EOT
  channel API   $api            (curl $api/channels)
  RTMP ingest   rtmp://127.0.0.1:$rtmp_port/live
  SRT ingest    srt://127.0.0.1:$srt_port (streamid: the stream key; see the endpoints' srt.url)
  channel       $id
  push URL      $push_url
  playback URL  $playback_url
                (signed: curl -H 'Cookie: <the endpoints' playback.authorization.cookies>' …,
                 or open the endpoints' playback.signed_playlist_url)
  edge          $PLAYBACK_BASE_URL  (log: $state/edge.log)
  assets        $api/assets
  devices       $api/devices   (register: curl -X PUT $api/devices/cam1 -H 'content-type: application/json' \\
                  -d '{"gateway_id":"gw1","media_url":"rtsp://user:pass@camera/stream1"}';
                heartbeat: curl -X POST $api/gateways/gw1/heartbeat -H 'content-type: application/json' \\
                  -d '{"devices":[{"id":"cam1","media_url":"rtsp://user:pass@camera/stream1"}]}')
  logs          $state/{moto,api,streamer,mediaconvert,reconciler}.log, $state/tasks/<slot>.log
  e.g.  ffmpeg -re -i input.mp4 -c:v libx264 -g 50 -c:a aac -f flv '$push_url'
  VOD:  upload to s3://$MEDIA_BUCKET/inputs/ (endpoint $AWS_ENDPOINT_URL), then
        $bin/vod-local upload-event --bucket $MEDIA_BUCKET --key 'inputs/<name>'
        (mediaconvert-local transcodes it: progress in $state/mediaconvert.log, events in
        $state/mediaconvert-events/, jobs at $MEDIACONVERT_ENDPOINT/2017-08-29/jobs)
EOT
  wait
  exit 0
fi

input=${INPUT:-}
if [ -z "$input" ]; then
  input=$state/demo-720p.mp4
  say "generating a 20 s 720p H.264/AAC test clip: $input"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i sine=frequency=440:sample_rate=48000 -t 20 \
    -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 60 -keyint_min 60 -sc_threshold 0 \
    -c:a aac -b:a 128k "$input"
  codec=(-c copy)
else
  # Any input: encode to H.264/AAC with an IDR every 2 s so 4 s segments cut cleanly.
  codec=(-c:v libx264 -preset veryfast -pix_fmt yuv420p -force_key_frames 'expr:gte(t,n_forced*2)' -c:a aac -ar 48000)
fi
expected=$(ffprobe -v error -show_entries format=duration -of default=nw=1:nk=1 "$input")

say "relay: an RTMP destination (ffmpeg listening) added to the channel; its key is masked"
ffmpeg -hide_banner -loglevel error -nostdin -y -listen 1 -timeout 60 \
  -i "rtmp://127.0.0.1:$relay_port/live/demo-relay-key" -c copy "$state/relay.flv" &
relay_listener=$!
pids+=("$relay_listener")
sleep 1 # (a probe connection would use up the listener's one connection)
curl -fsS -X PATCH "$api/channels/$id" -H 'content-type: application/json' -H 'If-Match: "1"' \
  -d "{\"relays\":[{\"url\":\"rtmp://127.0.0.1:$relay_port/live/demo-relay-key\"}]}" \
  | "$venv/bin/python" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["relays"]))'

say "egress: streamer egress follows the channel through the API and the edge, to udp://127.0.0.1:$egress_port"
ffmpeg -hide_banner -loglevel error -nostdin -y -i "udp://127.0.0.1:$egress_port?timeout=15000000" \
  -c copy -f mpegts "$state/egress.ts" &
egress_recorder=$!
pids+=("$egress_recorder")
"$bin/streamer" egress --source "channel:$id" --api-url "$api" --live-edge-segments 1 \
  --target "udp://127.0.0.1:$egress_port" 2>"$state/egress.log" &
egress=$!
pids+=("$egress")

say "publishing $input over RTMP in real time (${expected%.*} s)"
( sleep 10; echo "  relay status during the publish: $(curl -fsS "$api/channels/$id" \
    | "$venv/bin/python" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["relays"][0]["status"]))')" ) &
ffmpeg -hide_banner -loglevel error -nostdin -re -i "$input" "${codec[@]}" -f flv "$push_url"

say "waiting for the final playlist (EXT-X-ENDLIST), read with the signed cookies"
for _ in $(seq 1 100); do
  curl -fsS -H "Cookie: $cookie" "$playback_url" 2>/dev/null | grep -q EXT-X-ENDLIST && break
  sleep 0.2
done
curl -fsS -H "Cookie: $cookie" "$playback_url"

say "playback authorization at the edge (as CloudFront's signed/* behaviour)"
status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
first_segment=$(curl -fsS -H "Cookie: $cookie" "$playback_url" | grep -v '^#' | head -1)
segment_url=${playback_url%/*}/$first_segment
refused=$(status_of "$playback_url")
refused_segment=$(status_of "$segment_url")
forged=$(status_of -H "Cookie: ${cookie/CloudFront-Signature=/CloudFront-Signature=x}" "$segment_url")
authorized=$(status_of -H "Cookie: $cookie" "$segment_url")
set_cookies=$(curl -fsS -D - -o /dev/null "$signed_playlist_url" | grep -ci '^set-cookie: CloudFront-' || true)
echo "  no credentials:        playlist $refused, segment $refused_segment (refused)"
echo "  tampered signature:    segment $forged (refused)"
echo "  signed cookies:        segment $authorized (played)"
echo "  signed playlist URL:   $(status_of "$signed_playlist_url"), answered with $set_cookies CloudFront-* cookies for the segments"
[ "$refused" = 403 ] && [ "$refused_segment" = 403 ] && [ "$forged" = 403 ] && [ "$authorized" = 200 ] && [ "$set_cookies" = 3 ] \
  || { echo "playback authorization did not behave as CloudFront's; see $state/edge.log" >&2; exit 1; }

say "HLS objects in s3://$MEDIA_BUCKET (local emulator)"
"$venv/bin/python" - <<'PY'
import os, boto3
s3 = boto3.client("s3")
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["MEDIA_BUCKET"]):
    for o in page.get("Contents", []):
        print(f'{o["Size"]:>10}  {o["Key"]}')
PY

say "validating the playlist with ffprobe (with the signed cookies)"
cookie_header="Cookie: $cookie"$'\r\n'
ffprobe -v error -headers "$cookie_header" -show_entries format=duration:stream=codec_name,width,height,sample_rate -of compact "$playback_url"
got=$(ffprobe -v error -headers "$cookie_header" -show_entries format=duration -of default=nw=1:nk=1 "$playback_url")
"$venv/bin/python" -c "import sys; e,g=float('$expected'),float('$got'); print(f'input {e:.2f} s, HLS {g:.2f} s'); sys.exit(0 if abs(e-g) <= 1 else 1)" \
  || { echo "HLS duration differs from the input by more than 1 s" >&2; exit 1; }
state_now=$(curl -fsS "$api/channels/$id" | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["state"])')
echo "channel state after unpublish: $state_now"

say "relay and egress: what the RTMP destination and the UDP receiver got"
wait "$relay_listener" || true
relayed=$(ffprobe -v error -show_entries format=duration -of default=nw=1:nk=1 "$state/relay.flv")
# The egress runs a segment behind the live edge, paced in real time: let it send the last
# ones, then SIGTERM.
sleep 8
kill -TERM "$egress"; wait "$egress" || true
wait "$egress_recorder" || true
egressed=$(ffprobe -v error -show_entries format=duration -of default=nw=1:nk=1 "$state/egress.ts")
echo "  relay destination recorded $relayed s; the egress receiver recorded $egressed s of MPEG-TS"
grep -h 'egress stopped' "$state/egress.log" | tail -1 | sed 's/^/  /' || true
"$venv/bin/python" -c "import sys; r,g=float('$relayed'),float('$egressed'); sys.exit(0 if r >= float('$expected') - 1 and g >= 8 else 1)" \
  || { echo "relay or egress short; see $state/streamer.log and $state/egress.log" >&2; exit 1; }
if grep -q demo-relay-key "$state"/*.log; then echo "a relay stream key reached a log" >&2; exit 1; fi

say "pull: recording 8 s of the clip sent as UDP MPEG-TS, as device demo-cam"
udp_port=${PULL_UDP_PORT:-5004}
say "PUT $api/devices/demo-cam and its gateway's heartbeat (the device goes online)"
curl -fsS -X PUT "$api/devices/demo-cam" -H 'content-type: application/json' \
  -d "{\"gateway_id\":\"demo-gw\",\"name\":\"demo camera\",\"media_url\":\"udp://127.0.0.1:$udp_port\"}"
echo
curl -fsS -X POST "$api/gateways/demo-gw/heartbeat" -H 'content-type: application/json' \
  -d "{\"devices\":[{\"id\":\"demo-cam\",\"media_url\":\"udp://127.0.0.1:$udp_port\"}]}"
echo
say "the reconciler (devices-local) starts a streamer pull process for demo-cam's task slot"
task_log=$state/tasks/dev-demo-cam.log
for _ in $(seq 1 150); do grep -q pulling "$task_log" 2>/dev/null && break; sleep 0.1; done
grep -q pulling "$task_log" || { echo "no streamer task for demo-cam; see $state/reconciler.log" >&2; exit 1; }
grep -h "task started" "$state/reconciler.log" | tail -1
ffmpeg -hide_banner -loglevel error -nostdin -re -i "$input" -t 8 "${codec[@]}" -f mpegts "udp://127.0.0.1:$udp_port?pkt_size=1316"
say "the gateway's next heartbeat no longer lists demo-cam: the reconciler stops its task"
curl -fsS -X POST "$api/gateways/demo-gw/heartbeat" -H 'content-type: application/json' -d '{"devices":[]}'
echo
device_url=$PLAYBACK_BASE_URL/devices/demo-cam/live/index.m3u8
for _ in $(seq 1 200); do curl -fsS "$device_url" 2>/dev/null | grep -q EXT-X-ENDLIST && break; sleep 0.1; done
grep -h "task stopped\|unassigned" "$state/reconciler.log" | tail -2
curl -fsS "$device_url"
"$venv/bin/python" - <<'PY'
import os, boto3
s3 = boto3.client("s3")
for o in s3.list_objects_v2(Bucket=os.environ["MEDIA_BUCKET"], Prefix="devices/demo-cam/").get("Contents", []):
    if o["Key"].endswith(".m3u8"):
        print(f'{o["Size"]:>10}  {o["Key"]}')
PY
got=$(ffprobe -v error -show_entries format=duration -of default=nw=1:nk=1 "$device_url")
"$venv/bin/python" -c "import sys; g=float('$got'); print(f'device live playlist: {g:.2f} s of 8 s'); sys.exit(0 if abs(g-8) <= 1 else 1)" \
  || { echo "device playlist differs from the 8 s sent by more than 1 s; see $state/tasks/dev-demo-cam.log" >&2; exit 1; }
echo "device live playlist: $device_url"
say "GET $api/devices/demo-cam (status, stream state) and its endpoints"
curl -fsS "$api/devices/demo-cam"; echo
curl -fsS "$api/devices/demo-cam/endpoints"; echo

say "VOD: uploading the clip to s3://$MEDIA_BUCKET/inputs/demo clip.mp4"
INPUT_FILE=$input "$venv/bin/python" - <<'PY'
import os, boto3
boto3.client("s3").upload_file(os.environ["INPUT_FILE"], os.environ["MEDIA_BUCKET"], "inputs/demo clip.mp4")
PY
say "VOD: delivering the S3 ObjectCreated event to the trigger function"
"$bin/vod-local" upload-event --bucket "$MEDIA_BUCKET" --key "inputs/demo clip.mp4" 2>"$state/vod.log"
asset_json() { curl -fsS "$api/assets" | "$venv/bin/python" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["items"][0]))'; }
asset=$(asset_json)
job_id=$(printf '%s' "$asset" | "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
say "the job mediaconvert-local received (GetJob $job_id)"
JOB=$(curl -fsS "$MEDIACONVERT_ENDPOINT/2017-08-29/jobs/$job_id") "$venv/bin/python" - <<'PY'
import json, os
job = json.loads(os.environ["JOB"])["job"]
s = job["settings"]
print(f'job {job["id"]} ({job["status"]}), input {s["inputs"][0]["fileInput"]}')
for g in s["outputGroups"]:
    gs = g["outputGroupSettings"]
    dest = (gs.get("hlsGroupSettings") or gs.get("fileGroupSettings"))["destination"]
    for o in g["outputs"]:
        v = o["videoDescription"]
        codec = v["codecSettings"]
        rate = codec.get("h264Settings", {}).get("maxBitrate", "")
        print(f'  {g["name"]:<10} {v["width"]:>4}x{v["height"]:<4} {codec["codec"]:<13} {str(rate):>8}  {dest}<name>{o.get("nameModifier", "")}')
PY
say "VOD: mediaconvert-local transcodes the clip with ffmpeg (progress: $state/mediaconvert.log)"
vod_start=$SECONDS
status=
for _ in $(seq 1 180); do
  asset=$(asset_json)
  status=$(printf '%s' "$asset" | "$venv/bin/python" -c 'import json,sys; a=json.load(sys.stdin); print(a["status"], a.get("progress_percent") or "")')
  grep -o 'job [^ ]* [A-Z]* [0-9]*%' "$state/mediaconvert.log" | tail -1 | sed 's/^/  mediaconvert-local: /' || true
  case $status in COMPLETE*|ERROR*) break ;; esac
  sleep 1
done
echo "asset status: $status (after $((SECONDS - vod_start)) s)"
case $status in COMPLETE*) ;; *) echo "the asset did not reach COMPLETE in 180 s; see $state/mediaconvert.log" >&2; printf '%s\n' "$asset" >&2; exit 1 ;; esac
say "VOD outputs (GET $api/assets)"
ASSET=$asset "$venv/bin/python" - <<'PY'
import json, os
a = json.loads(os.environ["ASSET"])
o = a["outputs"]
print("status       ", a["status"])
print("HLS master   ", o["hls_url"])
print("MP4          ", o["mp4_url"])
print("thumbnails   ", len(o["thumbnail_urls"]))
for u in o["thumbnail_urls"]:
    print("             ", u)
PY
say "ffprobe of each HLS rendition (resolution, bitrate under the ladder maximum)"
ASSET=$asset ROOT=$root "$venv/bin/python" - <<'PY'
import json, os, subprocess, sys, urllib.request
a = json.loads(os.environ["ASSET"])
ladder = json.load(open(os.path.join(os.environ.get("ROOT", "."), "functions/vod/presets.json")))["ladders"]["default"]
maxima = {r["height"]: r["max_bitrate"] for r in ladder}
ok = True
for r in a["outputs"]["renditions"]:
    url = r["playlist_url"]
    base = url.rsplit("/", 1)[0]
    lines = urllib.request.urlopen(url).read().decode().splitlines()
    segs = [(float(lines[i - 1].split(":")[1].rstrip(",")), l) for i, l in enumerate(lines) if l and not l.startswith("#")]
    peak = max(len(urllib.request.urlopen(f"{base}/{s}").read()) * 8 / d for d, s in segs)
    probe = json.loads(subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
        "stream=width,height,codec_name", "-of", "json", f"{base}/{segs[0][1]}"], capture_output=True, text=True, check=True).stdout)["streams"][0]
    cap = maxima.get(r["height"], 0)
    good = (probe["width"], probe["height"]) == (r["width"], r["height"]) and peak <= (cap + 96000) * 1.25
    ok &= good
    print(f'  {probe["width"]:>4}x{probe["height"]:<4} {probe["codec_name"]}  average {r.get("average_bitrate") or 0:>8} b/s  peak segment {peak:>9.0f} b/s  ladder max {cap:>8} (+audio)  {"ok" if good else "OVER"}')
sys.exit(0 if ok else 1)
PY

say "done: playback URL $playback_url"
echo "(the stack stops now; run 'make local' to keep it running)"
