#!/usr/bin/env bash
# The key pair of signed playback (CloudFront signed URLs and cookies, README.md "Deploy"):
# an RSA 2048 key generated with openssl into DIR,
#   DIR/private.pem   private key, PKCS#8 PEM (-----BEGIN PRIVATE KEY-----), mode 600
#   DIR/public.pem    public key, SPKI PEM (-----BEGIN PUBLIC KEY-----): PlaybackPublicKey
# and with --create-secret NAME a Secrets Manager secret NAME whose SecretString is the private
# key (`aws secretsmanager create-secret`): PlaybackPrivateKeySecretArn. Then it prints the
# parameter overrides for `sam deploy` and `cdk deploy`. The private key is never printed.
#
#   scripts/playback-keys.sh [--create-secret NAME] [--region REGION] [--force] DIR
#
# DIR is created (mode 700); existing keys in it are kept unless --force. Keep DIR out of
# version control (outside the repository, or ignored).
set -euo pipefail

usage() {
  sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

secret_name=""
region=()
force=false
dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    --create-secret) [ $# -ge 2 ] || usage 2; secret_name="$2"; shift 2 ;;
    --create-secret=*) secret_name="${1#*=}"; shift ;;
    --region) [ $# -ge 2 ] || usage 2; region=(--region "$2"); shift 2 ;;
    --region=*) region=(--region "${1#*=}"); shift ;;
    --force) force=true; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "playback-keys: unknown option $1" >&2; usage 2 ;;
    *) [ -z "$dir" ] || { echo "playback-keys: one DIR only" >&2; usage 2; }; dir="$1"; shift ;;
  esac
done
[ -n "$dir" ] || { echo "playback-keys: DIR missing" >&2; usage 2; }
if [ -n "$secret_name" ] && [[ ! "$secret_name" =~ ^[A-Za-z0-9/_+=.@-]{1,512}$ ]]; then
  echo "playback-keys: --create-secret: a secret name is 1-512 of A-Z a-z 0-9 / _ + = . @ -" >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "playback-keys: openssl not found on PATH" >&2; exit 1; }
if [ -n "$secret_name" ]; then
  command -v aws >/dev/null || { echo "playback-keys: --create-secret needs the AWS CLI (aws)" >&2; exit 1; }
fi

umask 077
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
private="$dir/private.pem"
public="$dir/public.pem"

if [ -e "$private" ] && ! $force; then
  echo "playback-keys: $private exists: keeping it (--force makes a new pair)" >&2
else
  # Written to a temporary name first: an interrupted run leaves no half key behind.
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$private.tmp" 2>/dev/null
  mv -f "$private.tmp" "$private"
  rm -f "$public"
fi
chmod 600 "$private"
head -n 1 "$private" | grep -qx -- '-----BEGIN PRIVATE KEY-----' \
  || { echo "playback-keys: $private is not a PKCS#8 PEM private key" >&2; exit 1; }
bits=$(openssl pkey -in "$private" -noout -text 2>/dev/null | sed -n 's/^Private-Key: (\([0-9]*\) bit.*/\1/p')
[ "$bits" = 2048 ] || { echo "playback-keys: $private is not an RSA 2048 key (CloudFront signs with RSA 2048)" >&2; exit 1; }
openssl pkey -in "$private" -pubout -out "$public"
chmod 644 "$public"

# A key inside a git work tree that git would track: say so (it must never be committed).
if git -C "$dir" rev-parse --is-inside-work-tree >/dev/null 2>&1 \
  && ! git -C "$dir" check-ignore -q "$private"; then
  echo "playback-keys: warning: $private is inside a git work tree and not ignored; do not commit it" >&2
fi

arn="<full ARN of the secret holding $private, with its -XXXXXX suffix>"
if [ -n "$secret_name" ]; then
  arn=$(aws "${region[@]}" secretsmanager create-secret --name "$secret_name" \
    --description "streamstack playback signing key (CloudFront signed URLs and cookies), PKCS#8 PEM" \
    --secret-string "file://$private" --query ARN --output text)
  echo "Created secret $secret_name: $arn"
  # PlaybackPrivateKeySecretArn's pattern: the full ARN (the API's grant is on that exact ARN).
  if [[ ! "$arn" =~ ^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:[A-Za-z0-9/_+=.@-]+-[A-Za-z0-9]{6}$ ]]; then
    echo "playback-keys: warning: $arn is not a full secret ARN (PlaybackPrivateKeySecretArn needs the -XXXXXX suffix)" >&2
  fi
fi

toml_key=$(awk 'BEGIN { ORS = "" } NR > 1 { print "\\n" } { print }' "$public")
cat <<EOF
Public key:  $public (PlaybackPublicKey)
Private key: $private (mode 600; $( [ -n "$secret_name" ] && echo "in the secret now, delete this copy when you no longer need it" || echo "store it: scripts/playback-keys.sh --create-secret NAME $dir" ))

sam deploy --parameter-overrides (a command-line list replaces samconfig.toml's for that run):
  "PlaybackPublicKey='\$(cat $public)'" PlaybackPrivateKeySecretArn=$arn

samconfig.toml, parameter_overrides (the same two, kept for every later sam deploy):
  PlaybackPublicKey=\"$toml_key\" PlaybackPrivateKeySecretArn=\"$arn\"

cdk deploy:
  --parameters "PlaybackPublicKey=\$(cat $public)" --parameters PlaybackPrivateKeySecretArn=$arn
EOF
