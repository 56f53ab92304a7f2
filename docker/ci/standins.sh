#!/bin/bash
# Builds local stand-ins for the images a machine without registry access
# cannot pull, under the project's own prefix only: no image is ever tagged
# with a name a registry serves (debian:*, mariadb:*, redis:*), so a user's
# own `docker compose up` never runs one of these by mistake. They reach
# compose and the cluster through MARIADB_IMAGE, REDIS_IMAGE, the Dockerfile's
# build arguments and test-owned kustomizations. Each is built only when
# missing or when its folder changed:
#   hp-ci/debian:bookworm-slim  debootstrap of Debian's mirror (the one apt uses here)
#   hp-ci/runtime          distroless/cc-like, from Debian's libc6, libgcc-s1,
#                          ca-certificates and tzdata; nonroot 65532, no shell
#   hp-ci/rust:1.95        bookworm, gcc, this machine's Rust toolchain and CA store
#   hp-ci/mariadb:10.11    Debian's mariadb-server behind the official image's conventions
#   hp-ci/redis:7          Debian's redis-server as uid 999
#   hp-ci/probe            curl on Debian, for network isolation checks
set -euo pipefail
cd "$(dirname "$0")"

have() { docker image inspect "$1" > /dev/null 2>&1; }

BASE=hp-ci/debian:bookworm-slim
if ! have "$BASE"; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  : "${mirror:?cannot find the Debian mirror apt uses (/etc/apt/sources.list.d/debian.sources)}"
  root=$(mktemp -d)
  echo "stand-ins: debootstrap bookworm (minbase)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" > "$root.log" 2>&1 \
    || { tail -20 "$root.log"; exit 1; }
  tar -C "$root" -c . | docker import - "$BASE" > /dev/null
  rm -rf "$root" "$root.log"
fi

# Rebuilt when their folder changed (its hash is a label of the image).
current() { # image folder
  local want
  want=$(cat "$2"/* | sha256sum | cut -c1-16)
  [ "$(docker image inspect --format '{{index .Config.Labels "hp.context"}}' "$1" 2> /dev/null)" = "$want" ] \
    || docker build -q --build-arg "BASE_IMAGE=$BASE" --label "hp.context=$want" -t "$1" "$2" > /dev/null
}
current hp-ci/runtime runtime
current hp-ci/mariadb:10.11 mariadb
current hp-ci/redis:7 redis
current hp-ci/probe probe
# The Rust build image: its context is assembled here (the toolchain this
# machine runs and its CA store are not in the repository); rebuilt when the
# Dockerfile, the toolchain or the CA store changed.
sysroot=$(rustc --print sysroot)
version=$(rustc --version | awk '{print $2}')
RUST=hp-ci/rust:1.95
case $version in 1.95.*) ;; *) echo "stand-ins: $RUST stands in for rust:1.95 and needs rustc 1.95 here, not $version" >&2; exit 1 ;; esac
want=$( (cat rust/Dockerfile; rustc --version; cat /etc/ssl/certs/ca-certificates.crt) | sha256sum | cut -c1-16)
if [ "$(docker image inspect --format '{{index .Config.Labels "hp.context"}}' "$RUST" 2> /dev/null)" != "$want" ]; then
  echo "stand-ins: $RUST (bookworm, gcc, rustc $version, this machine's CA store)"
  ctx=$(mktemp -d)
  mkdir -p "$ctx/certs" "$ctx/toolchain/bin" "$ctx/toolchain/lib"
  cp rust/Dockerfile "$ctx/"
  cp -L /etc/ssl/certs/ca-certificates.crt "$ctx/certs/"
  cp "$sysroot/bin/cargo" "$sysroot/bin/rustc" "$ctx/toolchain/bin/"
  cp -a "$sysroot/lib/." "$ctx/toolchain/lib/"
  docker build -q --build-arg "BASE_IMAGE=$BASE" --label "hp.context=$want" -t "$RUST" "$ctx" > /dev/null \
    || { rm -rf "$ctx"; exit 1; }
  rm -rf "$ctx"
fi
echo "stand-ins: ready ($RUST)"
