#!/bin/bash
# Sourced by docker/deploy.sh and docker/ci/e2e.sh: sets the array
# `compose_cmd` to the Compose command to run. COMPOSE when set (e.g.
# COMPOSE=docker-compose); else `docker compose` (v2 and later) when it
# answers; else Debian's v1 `docker-compose`.
if [ -n "${COMPOSE:-}" ]; then
  read -r -a compose_cmd <<< "$COMPOSE"
elif docker compose version > /dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  compose_cmd=(docker-compose)
fi
