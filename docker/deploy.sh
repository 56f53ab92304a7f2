#!/bin/bash
# Deploys a new build of the stack with no manual step:
#   docker/deploy.sh [--replicas N]
# 1. builds the images;
# 2. applies migrations (the one-shot `migrate` service);
# 3. rolls hardware: starts N new replicas beside the old ones, waits until they
#    are healthy, then stops the old ones (the portal routes around them and
#    keeps serving from its last-known-good data, so visitors see no error);
# 4. recreates the portal last (a drain and restart of about a second: the one
#    public port cannot be held by two containers at once).
# Works with Compose v2 and later (`docker compose`) and Debian's docker-compose
# v1; COMPOSE names the command to use (e.g. COMPOSE=docker-compose).
set -euo pipefail
cd "$(dirname "$0")/.."
replicas=""
while [ $# -gt 0 ]; do
  case "$1" in
    --replicas) replicas=$2; shift 2 ;;
    *) echo "usage: docker/deploy.sh [--replicas N]" >&2; exit 2 ;;
  esac
done
# shellcheck source=docker/compose-command.sh
. docker/compose-command.sh
dc=("${compose_cmd[@]}")
project=${COMPOSE_PROJECT_NAME:-$(basename "$PWD" | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9_-')}
ids() { docker ps -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1"; }
healthy_count() {
  local n=0 id
  for id in "$@"; do
    [ "$(docker inspect --format '{{.State.Health.Status}}' "$id" 2>/dev/null)" = healthy ] && n=$((n + 1))
  done
  echo "$n"
}

old=$(ids hardware)
current=$(echo "$old" | grep -c . || true)
replicas=${replicas:-$(( current > 0 ? current : 1 ))}

echo "deploy: building images"
"${dc[@]}" build

echo "deploy: database and migrations"
"${dc[@]}" up -d db
"${dc[@]}" up --no-deps migrate

echo "deploy: starting $replicas new hardware replica(s) beside $current old"
"${dc[@]}" up -d --no-deps --no-recreate --scale hardware=$((current + replicas)) hardware
new=$(comm -13 <(echo "$old" | sort) <(ids hardware | sort))
for _ in $(seq 120); do
  [ "$(healthy_count $new)" -ge "$replicas" ] && break
  sleep 1
done
if [ "$(healthy_count $new)" -lt "$replicas" ]; then
  echo "deploy: new replicas not healthy after 120 s; old ones left running" >&2
  exit 1
fi
if [ -n "$old" ]; then
  echo "deploy: stopping the old hardware replicas"
  # shellcheck disable=SC2086
  docker stop $old > /dev/null && docker rm $old > /dev/null
fi

echo "deploy: recreating the portal"
"${dc[@]}" up -d --no-deps portal
echo "deploy: done"
