#!/usr/bin/env bash
# Builds the streamer image (streamer/Dockerfile) with buildah, daemonless (vfs storage,
# chroot isolation): runs as root on a machine without a container engine, as CI.
#   scripts/image-build.sh [TAG]     (default localhost/streamstack-streamer:dev)
# IMAGE_STAGES=prebuilt (default): the workspace builds the binary on this machine with the
#   Dockerfile's own build command (`cargo build --release --locked -p streamer --bin
#   streamer`, CARGO_TARGET_DIR honoured) and the Dockerfile's `prebuilt` target copies it
#   onto the runtime stage, which is built for real (its RUN: apt-get from Debian).
# IMAGE_STAGES=all: the Dockerfile's default multi-stage build (needs the Rust image).
# Base image: debian:bookworm-slim (the Dockerfile's RUNTIME_IMAGE) is used from local
# storage, else pulled; when no registry answers it is made here from Debian's archive with
# mmdebstrap (minbase, merged /usr, no docs or locales: what the official slim image holds)
# and cached as a tarball in IMAGE_CACHE for IMAGE_CACHE_DAYS (7).
# BUILDAH_ROOT / BUILDAH_RUNROOT: a private storage (default: buildah's /var/lib/containers);
# STORAGE_DRIVER (vfs: no overlay mounts, works nested), BUILDAH_ISOLATION (chroot).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:-localhost/streamstack-streamer:dev}
stages=${IMAGE_STAGES:-prebuilt}
cache=${IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/streamstack-image}
dockerfile=$root/streamer/Dockerfile
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs} BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
# (buildah reads BUILDAH_ISOLATION but not STORAGE_DRIVER: the flag.)
storage=(--storage-driver "$STORAGE_DRIVER")
[ -n "${BUILDAH_ROOT:-}" ] && storage+=(--root "$BUILDAH_ROOT")
[ -n "${BUILDAH_RUNROOT:-}" ] && storage+=(--runroot "$BUILDAH_RUNROOT")
bah() { buildah "${storage[@]}" "$@"; }
log() { printf '==> %s\n' "$*" >&2; }
command -v buildah >/dev/null || { echo "buildah not found: apt-get install buildah" >&2; exit 1; }

# The runtime base: FROM ${RUNTIME_IMAGE}, default from the Dockerfile.
base=$(sed -n 's/^ARG RUNTIME_IMAGE=//p' "$dockerfile")
case $base in */*) full=$base ;; *) full=docker.io/library/$base ;; esac
if bah inspect --type image "$full" >/dev/null 2>&1; then
  log "base $full: in local storage"
elif timeout 120 buildah "${storage[@]}" pull --quiet "$full" >/dev/null 2>&1; then
  log "base $full: pulled"
else
  case $base in
    debian:*-slim) suite=${base#debian:}; suite=${suite%-slim} ;;
    *) echo "cannot pull $full and cannot make it locally (only debian:<suite>-slim)" >&2; exit 1 ;;
  esac
  tarball=$cache/debian-$suite-slim.tar
  if [ -z "$(find "$tarball" -mtime -"${IMAGE_CACHE_DAYS:-7}" 2>/dev/null)" ]; then
    command -v mmdebstrap >/dev/null || { echo "mmdebstrap not found: apt-get install mmdebstrap" >&2; exit 1; }
    log "base $full: no registry; making it from Debian's archive with mmdebstrap ($tarball)"
    mkdir -p "$cache"
    mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
    rm -rf "$tarball.part.tar"
    timeout 600 mmdebstrap --quiet --variant=minbase --format=tar \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --aptopt='Acquire::Languages "none"' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log' \
      "$suite" "$tarball.part.tar" \
      "deb $mirror $suite main" "deb $mirror $suite-updates main" \
      "deb ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security} $suite-security main"
    mv "$tarball.part.tar" "$tarball"
  else
    log "base $full: no registry; from the cached rootfs $tarball"
  fi
  ctr=$(bah from --quiet scratch)
  mnt=$(bah mount "$ctr")
  tar -C "$mnt" -xpf "$tarball"
  bah umount "$ctr" >/dev/null
  bah config --cmd '["bash"]' \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  bah commit --quiet --rm "$ctr" "$full" >/dev/null
fi

# --format docker: the OCI format has no HEALTHCHECK.
bud=(buildah "${storage[@]}" bud --format docker --pull=never -f "$dockerfile" -t "$tag")
case $stages in
  prebuilt)
    # The Dockerfile's build command, on this machine.
    cargo_args=$(sed -n 's/^RUN cargo build \(.*\) \\$/\1/p' "$dockerfile")
    [ -n "$cargo_args" ] || { echo "no 'RUN cargo build' line in $dockerfile" >&2; exit 1; }
    log "cargo build $cargo_args"
    (cd "$root" && timeout 1800 cargo build $cargo_args)
    bin=${CARGO_TARGET_DIR:-$root/target}/release/streamer
    context=$(mktemp -d)
    trap 'rm -rf "$context"' EXIT
    cp "$bin" "$context/streamer"
    log "buildah bud --target prebuilt ($bin) -> $tag"
    timeout 900 "${bud[@]}" --target prebuilt "$context"
    ;;
  all)
    bud=("${bud[@]/--pull=never/--pull=missing}")
    log "buildah bud (all stages) -> $tag"
    timeout 3600 "${bud[@]}" "$root"
    ;;
  *) echo "IMAGE_STAGES must be prebuilt or all" >&2; exit 1 ;;
esac
log "built $tag"
