#!/bin/bash
# Compose end-to-end proof: the real docker-compose.yml, with local stand-ins
# only for images that cannot be pulled here (see standins.sh). Every check
# prints its figure; the last line is "e2e: N passed, M failed".
#
# Needs: a running Docker engine, Compose (COMPOSE names the command: `cargo
# xtask e2e` builds Compose v5 from the Go module proxy and passes `docker
# compose` with DOCKER_CONFIG holding that plugin; without COMPOSE, `docker
# compose` when it answers, else Debian's v1 `docker-compose`) and the
# stand-in images (standins.sh). Both images are built by docker/Dockerfile's
# own build stage, as `docker compose up --build` builds them for a user; logs
# go to target/e2e/. Traffic goes only to loopback and to the containers this
# script creates. Every loop is bounded.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
logs=$root/target/e2e
mkdir -p "$logs"
cd "$root"

# shellcheck source=docker/compose-command.sh
. docker/compose-command.sh
compose=("${compose_cmd[@]}")
export COMPOSE_PROJECT_NAME="hpe2e$$"
export RUST_IMAGE=hp-ci/rust:1.95 RUNTIME_IMAGE=hp-ci/runtime
export MARIADB_IMAGE=hp-ci/mariadb:10.11 REDIS_IMAGE=hp-ci/redis:7 PROBE_DELAY=1s REFRESH_INTERVAL=200ms UPSTREAM_RESOLVE_INTERVAL=1s UPSTREAM_EJECT_FOR=2s
# The load below comes from one address (this host); the limiter is tested elsewhere.
export RATE_LIMIT_PER_SECOND=0
export PORTAL_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
portal="http://127.0.0.1:$PORTAL_PORT"
passed=0; failed=0
pass() { passed=$((passed + 1)); echo "e2e PASS: $*"; }
fail() { failed=$((failed + 1)); echo "e2e FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
fails() { ! "$@"; }
dc() { "${compose[@]}" "$@"; }
cleanup() { dc down -v --remove-orphans > /dev/null 2>&1 || true; }
trap cleanup EXIT
echo "e2e figure: $("${compose[@]}" version 2>&1 | head -1) (${compose[*]}); Docker Engine $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"

container() { docker ps -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --filter "label=com.docker.compose.service=$1"; }
health() { docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1"; }
probe() { local net=$1; shift; docker run --rm --network "${COMPOSE_PROJECT_NAME}_$net" hp-ci/probe "$@"; }
secret() { docker run --rm --entrypoint cat -v "${COMPOSE_PROJECT_NAME}_secrets:/s:ro" hp-ci/mariadb:10.11 "/s/$1"; }

wait_healthy() { # service count seconds
  local deadline=$((SECONDS + $3)) ids ok
  while [ $SECONDS -lt $deadline ]; do
    ids=$(container "$1"); ok=0
    for id in $ids; do [ "$(health "$id")" = healthy ] && ok=$((ok + 1)); done
    [ "$ok" -ge "$2" ] && return 0
    sleep 1
  done
  return 1
}

echo "== static checks"
check "docker-compose.yml is valid (compose config)" "${compose[@]}" config -q

echo "== build context"
# What `COPY . .` in docker/Dockerfile receives: no secret may reach a builder
# layer or the build cache. The k8s secrets exist here (the lint made them).
bash k8s/make-secrets.sh > /dev/null
context=$(printf 'FROM hp-ci/debian:bookworm-slim\nCOPY . /ctx\nRUN cd /ctx && find . -type f | sed "s/^/ctx: /"\n' \
  | docker build --no-cache -t "$COMPOSE_PROJECT_NAME-context" -f - . 2>&1 | sed -n 's/^ctx: //p')
docker rmi "$COMPOSE_PROJECT_NAME-context" > /dev/null 2>&1 || true
leaks=$(grep -E '(^|/)secrets/|\.(pem|key)$|(^|/)\.env$' <<< "$context")
echo "e2e figure: build context $(grep -c . <<< "$context") files"
context_clean() { [ -n "$context" ] && [ -z "$leaks" ]; }
check "the image build context holds no secret" context_clean
[ -z "$leaks" ] || echo "$leaks" | head -5

echo "== images: docker/Dockerfile's own build (cargo-chef, cook, cargo build) on stand-in bases"
started=$SECONDS
dc build > "$logs/build.log" 2>&1 || { tail -30 "$logs/build.log"; fail "images build"; }
# Cold when the dependency layer had to be built, warm when it came from the cache.
cook=$(grep -m1 -A1 'RUN cargo chef cook' "$logs/build.log" | grep -c 'Using cache')
echo "e2e figure: both images built in $((SECONDS - started)) s ($([ "$cook" -gt 0 ] && echo "warm: the dependency layer came from the cache" || echo "cold: dependencies compiled"))"
for image in hardware-portal/hardware:local hardware-portal/portal:local; do
  size=$(docker image inspect --format '{{.Size}}' "$image")
  echo "e2e figure: $image $((size / 1000000)) MB (on the stand-in runtime: Debian's libc6, libgcc-s1, ca-certificates, tzdata)"
done

echo "== up (with passwords a careless script would mangle)"
# The generator keeps existing values: seed two that hold a quote, a
# backslash, a dollar, double quotes and spaces. Everything below (hardware
# healthy = it logged in; values shared = it authenticated to Redis) runs on them.
nasty="it's a \\ \$HOME \"test\" password"
docker volume create "${COMPOSE_PROJECT_NAME}_secrets" > /dev/null
docker run --rm --user 0 -v "${COMPOSE_PROJECT_NAME}_secrets:/s" --entrypoint /bin/sh hp-ci/mariadb:10.11 \
  -c 'printf "%s\n" "$0" > /s/db-app-password && printf "%s" "$0" > /s/redis-password' "$nasty"
dc up -d --build > "$logs/up.log" 2>&1 || { tail -30 "$logs/up.log"; }
check "db, hardware and portal healthy" wait_healthy portal 1 120
for service in db redis hardware; do
  check "$service healthy" [ "$(health "$(container "$service")")" = healthy ]
done
echo "e2e figure: cold up to healthy portal in $((SECONDS - started)) s (including image build)"
for one_shot in secrets migrate; do
  code=$(docker inspect --format '{{.State.ExitCode}}' "$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" --filter "label=com.docker.compose.service=$one_shot")")
  check "$one_shot one-shot exited 0" [ "$code" = 0 ]
done

echo "== secrets and users"
check "the app and Redis passwords in use are the ones with ' \\ \$ \" and spaces" \
  [ "$(secret db-app-password)" = "$nasty" ]
mounts() { docker inspect --format '{{range .Mounts}}{{.Name}} {{end}}' "$1"; }
for service in db redis hardware; do
  id=$(container "$service")
  check "$service mounts only its own secrets volume" \
    grep -qv -E "(^| )${COMPOSE_PROJECT_NAME}_secrets( |$)" <<< "$(mounts "$id")"
done
files() { docker run --rm -v "${COMPOSE_PROJECT_NAME}_secrets-$1:/s:ro" --entrypoint /bin/sh hp-ci/probe -c 'ls /s | tr "\n" " "'; }
check "hardware gets the app password, the admin token and the Redis password, nothing else" \
  [ "$(files hardware)" = "admin-token db-app-password redis-password " ]
check "migrate gets its password only" [ "$(files migrate)" = "db-migrate-password " ]
check "redis gets its password only" [ "$(files redis)" = "redis-password " ]
remote_roots=$(dc exec -T db sh -c 'MYSQL_PWD=$(cat /run/secrets/db-root-password) mariadb -uroot -N -e "SELECT COUNT(*) FROM mysql.user WHERE user = '"'root'"' AND host <> '"'localhost'"'"' | tr -d '\r')
check "root can log in from localhost only (MARIADB_ROOT_HOST)" [ "$remote_roots" = 0 ]
anonymous=$(dc exec -T redis redis-cli get hardware:availability:1 2>&1)
echo "e2e figure: Redis GET without a password: $anonymous"
check "Redis refuses a client without the password (it may only PING)" grep -q NOPERM <<< "$anonymous"
redis_as_hardware() { dc exec -T redis sh -c 'REDISCLI_AUTH=$(cat /run/secrets/redis-password) redis-cli --no-auth-warning --user hardware "$@"' sh "$@" 2>&1; }
check "the hardware user may write its own keys" grep -q OK <<< "$(redis_as_hardware set hardware:e2e 1)"
check "the hardware user may not touch other keys" grep -q NOPERM <<< "$(redis_as_hardware set other:e2e 1)"
check "the hardware user may not run other commands" grep -q NOPERM <<< "$(redis_as_hardware flushall)"

page_has() { local body; body=$(curl -fsS --max-time 5 "$portal/") && grep -q "$1" <<< "$body"; }
check "/ shows the seed row c5" page_has '>c5<'
check "/ shows the seed row H16mr" page_has '>H16mr<'

echo "== isolation"
published() { docker inspect --format '{{range $p, $b := .NetworkSettings.Ports}}{{if $b}}{{$p}} {{end}}{{end}}' "$1"; }
for service in hardware db redis; do
  check "$service publishes no port" [ -z "$(published "$(container "$service")")" ]
done
for target in hardware db redis; do
  check "a container on the public network cannot resolve $target" fails probe public getent hosts "$target"
done
hw_ip=$(docker inspect --format "{{(index .NetworkSettings.Networks \"${COMPOSE_PROJECT_NAME}_backend\").IPAddress}}" "$(container hardware)")
check "a container on the public network cannot connect to hardware by IP ($hw_ip)" \
  fails probe public curl -fsS --max-time 3 -o /dev/null "http://$hw_ip:5001/healthz"
check "the same probe on the backend network reaches hardware (the checks above can fail)" \
  probe backend curl -fsS --max-time 3 -o /dev/null http://hardware:5001/healthz
check "the same probe on the backend network resolves hardware" probe backend getent hosts hardware
portal_public_ip=$(docker inspect --format "{{(index .NetworkSettings.Networks \"${COMPOSE_PROJECT_NAME}_public\").IPAddress}}" "$(container portal)")
check "a container on the public network is refused at the portal's metrics port (:9090)" \
  fails probe public curl -fsS --max-time 3 -o /dev/null "http://$portal_public_ip:9090/metrics"
check "the same probe on the public network gets the dashboard from the portal (the check above can fail)" \
  probe public curl -fsS --max-time 3 -o /dev/null "http://$portal_public_ip:5000/"
check "a container on the backend network reads the portal's metrics" \
  probe backend curl -fsS --max-time 3 -o /dev/null http://portal-admin:9090/metrics

echo "== scale hardware to 3"
dc up -d --no-recreate --scale hardware=3 > /dev/null 2>&1
check "three hardware replicas healthy" wait_healthy hardware 3 60
# New replicas enter DNS before they listen; the portal may eject one on its
# first try. Wait out resolution (1 s) and ejection (2 s) before measuring.
sleep 4
calls() { probe backend curl -fsS --max-time 3 http://portal:9090/metrics | awk -F'[{}]' '/^portal_upstream_calls_total/ && /outcome="ok"/ {split($2, a, "\""); print a[2], $3}'; }
before=$(calls); sleep 10; after=$(calls)
shares=$(join <(echo "$before" | sort) <(echo "$after" | sort) | awk '{d[$1] = $3 - $2; t += $3 - $2} END {for (k in d) printf "%s %d %.3f\n", k, d[k], d[k] / t}')
echo "$shares" | sed 's/^/e2e figure: replica calls share /'
spread_ok() { [ "$(echo "$shares" | wc -l)" -eq 3 ] && echo "$shares" | awk '{ if ($3 < 0.23 || $3 > 0.43) bad = 1 } END { exit bad }'; }
check "portal traffic reaches all 3 replicas, each 33 % ± 10 %" spread_ok

metrics_all() { for id in $(container hardware); do
  docker run --rm --network "container:$id" hp-ci/probe curl -fsS --max-time 3 http://127.0.0.1:5001/metrics
done; }
all=$(metrics_all)
probes=$(awk '/^hardware_availability_probes_total\{outcome="ok"\}/ {s += $2} END {print s + 0}' <<< "$all")
adopted=$(awk '/^hardware_availability_shared_total\{outcome="adopted"\}/ {s += $2} END {print s + 0}' <<< "$all")
echo "e2e figure: across 3 replicas sharing Redis: $probes probes run, $adopted values adopted from another replica"
check "replicas share values through Redis (the new replicas adopted instead of probing)" [ "$adopted" -gt 0 ]

echo "== one replica killed under load"
victim=$(container hardware | head -1)
# A fixed rate, a new connection per request, so the kill lands in the middle of the load on a
# machine of any speed: 3,000 requests at 200 a second, the kill 3 s in.
load() {
  for _ in $(seq 3000); do printf 'url = "%s/"\noutput = "/dev/null"\n' "$portal"; done \
    | curl -s --rate 200/s --max-time 5 -H 'Connection: close' -w '%{http_code}\n' -K - > "$logs/load.txt"
}
load_started=$SECONDS
load & load_pid=$!
sleep 3; docker kill "$victim" > /dev/null
wait $load_pid
total=$(wc -l < "$logs/load.txt"); bad=$(grep -cv '^200$' "$logs/load.txt")
echo "e2e figure: $bad of $total portal requests failed while a replica was killed (200 requests/s, a new connection each, over $((SECONDS - load_started)) s)"
check "≤ 0.1 % failed requests with a replica killed" [ $((bad * 1000)) -le "$total" ]
fresh_page() {
  local body
  body=$(curl -fsS --max-time 5 "$portal/") || return 1
  grep -q '>c5<' <<< "$body" && ! grep -q 'role="alert" >' <<< "$body"
}
check "the page is fresh after the kill (retries went to live replicas)" fresh_page

echo "== rolling deploy of hardware under load"
load & load_pid=$!
sleep 1
COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME bash docker/deploy.sh --replicas 2 > "$logs/deploy.log" 2>&1
deploy_rc=$?
wait $load_pid
total=$(wc -l < "$logs/load.txt"); bad=$(grep -cv '^200$' "$logs/load.txt")
[ $deploy_rc -eq 0 ] || tail -20 "$logs/deploy.log"
check "docker/deploy.sh succeeds" [ $deploy_rc -eq 0 ]
echo "e2e figure: $bad of $total portal requests failed during the deploy (the portal itself is recreated last)"
check "2 fresh hardware replicas after the deploy" wait_healthy hardware 2 30
check "the portal is healthy again after the deploy" wait_healthy portal 1 60
check "the page is fresh after the deploy" fresh_page

echo "== data survives down + up"
token=$(secret admin-token)
created=$(probe backend curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -X POST http://hardware:5001/hardware/ \
  -H "Authorization: Bearer $token" -H 'content-type: application/json' -d '{"provider":"GCP","name":"e2e-survivor"}')
check "an item is created through the admin API (201)" [ "$created" = 201 ]
started=$SECONDS
dc down > /dev/null 2>&1
down_secs=$((SECONDS - started))
echo "e2e figure: docker compose down took $down_secs s"
check "down completes within 15 s (SIGTERM handled)" [ "$down_secs" -le 15 ]
dc up -d > /dev/null 2>&1
wait_healthy portal 1 120 > /dev/null
survived() { for _ in $(seq 20); do page_has 'e2e-survivor' && return 0; sleep 1; done; return 1; }
check "the item survives down + up (no -v)" survived

echo "== managing the inventory: docker compose exec hardware hardware items …"
csv="$logs/import.csv"
{ echo "provider,name"; for i in $(seq 1 1000); do echo "E2E,\"item $i, imported\""; done; } > "$csv"
started=$SECONDS
imported=$(dc exec -T hardware hardware items import - < "$csv" 2> "$logs/import.err")
echo "e2e figure: items import of 1,000 CSV rows: $imported (exec included: $((SECONDS - started)) s)"
check "items import - adds the 1,000 rows" grep -q 'added 1000, unchanged 0, removed 0, rejected 0 (applied' <<< "$imported"
shows_all() { for _ in $(seq 20); do page_has ' of 1003 items' && return 0; sleep 1; done; return 1; }
check "the dashboard counts them (2 seeds + 1 survivor + 1,000)" shows_all
exported=$(dc exec -T hardware hardware items export 2> /dev/null | grep -c '^E2E,"item [0-9]*, imported"$')
echo "e2e figure: items export returned $exported of the imported rows"
check "items export returns the 1,000 rows" [ "$exported" = 1000 ]
again=$(dc exec -T hardware hardware items import - < "$csv" 2> /dev/null)
check "importing the same file again changes nothing" grep -q 'added 0, unchanged 1000' <<< "$again"

echo "e2e: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
