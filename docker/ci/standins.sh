#!/bin/bash
# Builds local stand-ins for the images a machine without registry access
# cannot pull, under the project's own prefix only: no image is ever tagged
# with a name a registry serves (debian:*, mariadb:*, redis:*), so a user's
# own `docker compose up` never runs one of these by mistake. They reach
# compose and the cluster through MARIADB_IMAGE, REDIS_IMAGE, the Dockerfile's
# build arguments and test-owned kustomizations. Each is built only when
# missing (the last three also when their folder changed):
#   hp-ci/debian:bookworm-slim  debootstrap of Debian's mirror (the one apt uses here)
#   hp-ci/runtime          a distroless/cc-like root: glibc, libgcc, passwd with nonroot 65532
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

if ! have hp-ci/runtime; then
  echo "stand-ins: hp-ci/runtime (distroless/cc-like)"
  ctx=$(mktemp -d)
  mkdir -p "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/rootfs/lib/x86_64-linux-gnu" "$ctx/rootfs/lib64"
  chmod 1777 "$ctx/rootfs/tmp"
  for lib in libc.so.6 libm.so.6 libgcc_s.so.1 libdl.so.2 libpthread.so.0 librt.so.1; do
    cp -L "/lib/x86_64-linux-gnu/$lib" "$ctx/rootfs/lib/x86_64-linux-gnu/"
  done
  cp -L /lib64/ld-linux-x86-64.so.2 "$ctx/rootfs/lib64/"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$ctx/rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' > "$ctx/rootfs/etc/group"
  printf 'FROM scratch\nCOPY rootfs/ /\nUSER 65532:65532\n' > "$ctx/Dockerfile"
  docker build -q -t hp-ci/runtime "$ctx" > /dev/null
  rm -rf "$ctx"
fi

# Rebuilt when their folder changed (its hash is a label of the image).
current() { # image folder
  local want
  want=$(cat "$2"/* | sha256sum | cut -c1-16)
  [ "$(docker image inspect --format '{{index .Config.Labels "hp.context"}}' "$1" 2> /dev/null)" = "$want" ] \
    || docker build -q --build-arg "BASE_IMAGE=$BASE" --label "hp.context=$want" -t "$1" "$2" > /dev/null
}
current hp-ci/mariadb:10.11 mariadb
current hp-ci/redis:7 redis
current hp-ci/probe probe
echo "stand-ins: ready"
