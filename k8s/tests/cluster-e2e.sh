#!/bin/bash
# Kubernetes end-to-end proof: overlays dev and prod applied with `kubectl apply -k` on the real
# single-node cluster tools/cluster/cluster.sh brings up, its network policies enforced by the
# cluster's engine (kube-router's policy controller), asserted from the host and from pods
# this script creates (the connectivity matrices: matrix.sh). Every check prints its figure; the last line is "k8s: N passed, M failed".
#
# Needs KUBECONFIG (the cluster's admin), KUBECTL (default kubectl), NETPOL_PIDFILE (the
# policy engine's pid file, target/cluster/pids/netpol), the images of both
# services loaded into the cluster as hardware-portal/{hardware,portal}:0.1.0 and :0.1.1 (the
# rolling update's "new release", whose hardware has one more migration, 20991231000000),
# the stand-ins hp-ci/mariadb:10.11 and hp-ci/redis:7 (which the test kustomizations cluster-dev
# and cluster-prod put in place of the official images) and localhost/hp/probe:1.
# Traffic goes only to the cluster's own addresses. Every loop is bounded.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
: "${KUBECONFIG:?KUBECONFIG must name the admin kubeconfig of the cluster}"
read -r -a kubectl <<< "${KUBECTL:-kubectl}"
NS=hardware-portal
NODE_IP=${NODE_IP:-10.250.0.1}
READY_BOUND=${READY_BOUND:-180}

passed=0; failed=0
pass() { passed=$((passed + 1)); echo "k8s PASS: $*"; }
fail() { failed=$((failed + 1)); echo "k8s FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
fails() { ! "$@"; }
# Runs a command with its output dropped (a check's own PASS/FAIL line still prints).
quiet() { "$@" > /dev/null; }
figure() { echo "k8s figure: $*"; }
k() { "${kubectl[@]}" "$@"; }
kn() { k -n "$NS" "$@"; }
# Runs a command in the probe pod (namespace `monitoring`: the network policies let a scraper
# there reach the metrics ports).
probe() { k -n monitoring exec probe -- "$@"; }
# shellcheck source=k8s/tests/matrix.sh
. "$root/k8s/tests/matrix.sh"

# Every workload of the stack rolled out and every pod Ready, within $1 seconds.
ready_within() {
  local deadline=$((SECONDS + $1)) w
  for w in deployment/hardware deployment/portal deployment/redis statefulset/db; do
    kn rollout status "$w" --timeout "$((deadline - SECONDS > 1 ? deadline - SECONDS : 1))s" > /dev/null 2>&1 || return 1
  done
  kn wait --for=condition=Ready pod -l 'app.kubernetes.io/name in (hardware,portal,redis,db)' \
    --timeout "$((deadline - SECONDS > 1 ? deadline - SECONDS : 1))s" > /dev/null 2>&1
}

apply_and_time() { # kustomization label
  local started=$SECONDS
  check "kubectl apply -k $1" quiet k apply -k "$1"
  if ready_within "$READY_BOUND"; then
    pass "$2: every pod Ready within ${READY_BOUND}s ($((SECONDS - started)) s)"
  else
    fail "$2: every pod Ready within ${READY_BOUND}s"
    kn get pods -o wide; kn get events --sort-by=.lastTimestamp | tail -20
  fi
  figure "$2 ready after $((SECONDS - started)) s"
}

seed_rows_shown() { # page
  grep -q '<td data-label="Provider">Amazon</td>' <<< "$1" && grep -q '<td data-label="Name">c5</td>' <<< "$1"
}

# The page through a Service, waited for up to 30 s: a Service's rules follow its pods' readiness
# asynchronously (EndpointSlice controller, then kube-proxy's sync, at least 1 s apart), each
# Service on its own, so the first request right after "every pod Ready" may still be refused.
# Prints the page; the figure says how long the Service took to answer with the seed rows.
page_via() { # label command...
  local label=$1 started=$SECONDS deadline=$((SECONDS + 30)) page=""; shift
  until page=$("$@" 2> /dev/null) && seed_rows_shown "$page"; do
    [ $SECONDS -lt $deadline ] || break
    sleep 0.5
  done
  figure "$label answered with the seed rows after $((SECONDS - started)) s" >&2
  printf '%s' "$page"
}

delete_stack() {
  k delete namespace "$NS" --wait --timeout 180s > /dev/null 2>&1
  k delete pv --all --wait --timeout 60s > /dev/null 2>&1 || true
}

echo "== the probe (namespace monitoring)"
k apply -f - > /dev/null <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: monitoring}
---
apiVersion: v1
kind: Pod
metadata: {name: probe, namespace: monitoring}
spec:
  terminationGracePeriodSeconds: 0
  containers:
    - {name: probe, image: localhost/hp/probe:1, imagePullPolicy: Never, command: [sleep, infinity]}
EOF
check "the probe pod is Ready" quiet k -n monitoring wait --for=condition=Ready pod/probe --timeout 60s

echo "== overlay dev"
bash k8s/make-secrets.sh > /dev/null
apply_and_time k8s/tests/cluster-dev "dev"
page=$(page_via "dev: the portal Service" probe curl -fsS --max-time 5 "http://portal.$NS.svc.cluster.local:5000/")
check "dev: the dashboard through the portal Service (cluster DNS) shows the seed rows" seed_rows_shown "$page"
page=$(page_via "dev: NodePort 30500" curl -fsS --max-time 5 "http://$NODE_IP:30500/")
check "dev: the dashboard through NodePort 30500 shows the seed rows" seed_rows_shown "$page"

echo "== dev: the connectivity matrix (policies enforced by the cluster's engine)"
matrix_up
matrix dev
matrix_down

echo "== Pod Security restricted, enforced by the API server"
# A plain pod: no seccomp profile, capabilities kept, may run as root.
refusal=$(kn run pss-violator --image localhost/hp/probe:1 --image-pull-policy Never --restart Never -- sleep 1 2>&1)
figure "refusal: $(head -c 200 <<< "$refusal")"
check "a pod without the restricted settings is refused in $NS" grep -q 'violates PodSecurity "restricted:latest"' <<< "$refusal"
check "and it does not exist" fails kn get pod pss-violator

echo "== overlay prod (the cluster-prod test kustomization: prod with images from the node)"
delete_stack
apply_and_time k8s/tests/cluster-prod "prod"
check "prod: both autoscalers are in $NS" [ "$(kn get hpa -o name | wc -l)" -eq 2 ]
check "prod: both disruption budgets are in $NS" [ "$(kn get pdb -o name | wc -l)" -eq 2 ]
check "prod: nothing of the stack landed in default" [ -z "$(k -n default get hpa,pdb,deploy,cronjob -o name 2> /dev/null)" ]
policies=$(kn get networkpolicy -o name | sort | tr '\n' ' ')
figure "network policies: $policies"
check "prod: the network policies are on (default-deny and one per workload)" [ "$policies" = "networkpolicy.networking.k8s.io/allow-dns networkpolicy.networking.k8s.io/db networkpolicy.networking.k8s.io/db-backup networkpolicy.networking.k8s.io/default-deny networkpolicy.networking.k8s.io/hardware networkpolicy.networking.k8s.io/portal networkpolicy.networking.k8s.io/redis " ]
page=$(page_via "prod: the portal Service" probe curl -fsS --max-time 5 "http://portal.$NS.svc.cluster.local:5000/")
check "prod: the dashboard through the portal Service shows the seed rows" seed_rows_shown "$page"

echo "== prod: the connectivity matrix, and the negative control"
matrix_up
matrix prod backup
matrix_control k8s/tests/cluster-prod
matrix_down

echo "== autoscalers"
hpa_cpu() { kn get hpa "$1" -o jsonpath='{.status.currentMetrics[0].resource.current.averageUtilization}'; }
hpa_reports() { local deadline=$((SECONDS + 150)); until [ -n "$(hpa_cpu "$1")" ]; do [ $SECONDS -lt $deadline ] || return 1; sleep 3; done; }
for d in hardware portal; do
  started=$SECONDS
  check "prod: the $d HPA reports a current CPU utilisation (target resolved)" hpa_reports "$d"
  figure "$d HPA current CPU $(hpa_cpu "$d") % of request, after $((SECONDS - started)) s"
done

echo "== three hardware replicas, the portal's calls spread"
kn patch hpa hardware --type merge -p '{"spec":{"minReplicas":3}}' > /dev/null
three_ready() { local deadline=$((SECONDS + 120)); until [ "$(kn get deploy hardware -o jsonpath='{.status.readyReplicas}')" = 3 ]; do [ $SECONDS -lt $deadline ] || return 1; sleep 2; done; }
check "prod: the autoscaler raised hardware to 3 Ready replicas" three_ready
# The portal re-resolves the headless Service every UPSTREAM_RESOLVE_INTERVAL and ejects a
# replica that failed for UPSTREAM_EJECT_FOR (5 s and 10 s by default): let both pass.
sleep 16
portal_ips() { kn get pods -l app.kubernetes.io/name=portal -o jsonpath='{range .items[*]}{.status.podIP}{"\n"}{end}'; }
calls() {
  for ip in $(portal_ips); do probe curl -fsS --max-time 3 "http://$ip:9090/metrics"; done \
    | awk -F'[{}]' '/^portal_upstream_calls_total/ && /outcome="ok"/ {split($2, a, "\""); s[a[2]] += $3} END {for (k in s) print k, s[k]}'
}
before=$(calls); sleep 20; after=$(calls)
shares=$(join <(sort <<< "$before") <(sort <<< "$after") | awk '{d[$1] = $3 - $2; t += $3 - $2} END {for (k in d) printf "%s %d %.3f\n", k, d[k], d[k] / t}')
sed 's/^/k8s figure: replica calls share /' <<< "$shares"
spread_ok() { [ "$(grep -c . <<< "$shares")" -eq 3 ] && awk '{ if ($3 < 0.23 || $3 > 0.43) bad = 1 } END { exit bad }' <<< "$shares"; }
check "prod: the portals' calls reach all 3 hardware replicas, each 33 % ± 10 %" spread_ok

echo "== disruption budget"
evict() { # pod
  k create --raw "/api/v1/namespaces/$NS/pods/$1/eviction" -f - 2>&1 <<EOF
{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "$1", "namespace": "$NS"}}
EOF
}
mapfile -t portals < <(kn get pods -l app.kubernetes.io/name=portal -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
first=$(evict "${portals[0]}"); second=$(evict "${portals[1]}")
figure "second eviction: $(head -c 200 <<< "$second")"
check "prod: evicting one of the 2 portal pods is allowed (minAvailable 1)" fails grep -qi error <<< "$first"
check "prod: evicting the other right after is refused by the budget" grep -q 'disruption budget' <<< "$second"
check "prod: the portal is back to 2 Ready" quiet kn rollout status deployment/portal --timeout 90s

echo "== rolling update of hardware and portal under load from inside the cluster"
# The load is one client (the probe pod) at a fixed rate, a new connection per request, so what
# it proves does not depend on the machine's speed: at LOAD_RATE it stays well under the portal's
# per-client limit as prod ships it (RATE_LIMIT_PER_SECOND, default 50 a second, burst 100), and
# every answer that is not a 200 — a 429 included — is a failed request.
LOAD_RATE=${LOAD_RATE:-20}
LOAD_SECONDS=100
limit=$(kn get deployment portal -o jsonpath='{.spec.template.spec.containers[0].env[?(@.name=="RATE_LIMIT_PER_SECOND")].value}')
limit=${limit:-50}
check "prod: the rollout load's rate ($LOAD_RATE/s) is under the portal's per-client limit ($limit/s)" \
  [ "$LOAD_RATE" -lt "$limit" ]
load() { # seconds url: prints "ok bad seconds"; each failed answer's code on stderr
  probe bash -c 'for _ in $(seq $(($1 * $3))); do printf "url = \"%s\"\noutput = \"/dev/null\"\n" "$2"; done \
    | { start=$SECONDS; curl -s --rate "$3/s" --max-time 5 -H "Connection: close" -w "%{http_code}\n" -K -
        echo "took $((SECONDS - start))"; } \
    | awk '"'"'$1 == "took" { took = $2; next } $1 == "200" { ok++; next } { bad++; print "failed: " $1 > "/dev/stderr" }
        END { print ok + 0, bad + 0, took }'"'"'' load "$1" "$2" "$LOAD_RATE"
}
out=$(mktemp -d)
load "$LOAD_SECONDS" "http://portal.$NS.svc.cluster.local:5000/" > "$out/portal" 2> "$out/portal.err" &
portal_load=$!
load "$LOAD_SECONDS" "http://hardware.$NS.svc.cluster.local:5001/hardware/" > "$out/hardware" 2> "$out/hardware.err" &
hardware_load=$!
sleep 3
started=$SECONDS
kn set image deployment/hardware hardware=hardware-portal/hardware:0.1.1 migrate=hardware-portal/hardware:0.1.1 > /dev/null
kn set image deployment/portal portal=hardware-portal/portal:0.1.1 > /dev/null
check "prod: hardware rolled out to 0.1.1" quiet kn rollout status deployment/hardware --timeout 150s
check "prod: portal rolled out to 0.1.1" quiet kn rollout status deployment/portal --timeout 150s
figure "both rollouts done after $((SECONDS - started)) s"
wait "$portal_load" "$hardware_load"
read -r p_ok p_bad p_took < "$out/portal"; read -r h_ok h_bad h_took < "$out/hardware"
figure "load through the rollouts: $LOAD_RATE requests/s to each service from one client, a new connection each (the portal's per-client limit: $limit/s); portal / $p_ok ok, $p_bad failed in ${p_took:-?} s; hardware /hardware/ $h_ok ok, $h_bad failed in ${h_took:-?} s"
sort "$out"/*.err | uniq -c | head -5
check "prod: 0 failed requests to the portal during the rollouts (of ${p_ok:-0})" test "${p_bad:-1}" = 0 -a "${p_ok:-0}" -gt 0
check "prod: 0 failed requests to hardware during the rollouts (of ${h_ok:-0})" test "${h_bad:-1}" = 0 -a "${h_ok:-0}" -gt 0
rm -rf "$out"
new_pod=$(kn get pods -l app.kubernetes.io/name=hardware -o jsonpath='{.items[0].metadata.name}')
migrate_log=$(kn logs "$new_pod" -c migrate 2>&1 | tail -3)
figure "a new pod's migrate init container: $migrate_log"
check "prod: the new release's pods ran the migrations themselves (init container succeeded)" \
  [ "$(kn get pod "$new_pod" -o jsonpath='{.status.initContainerStatuses[0].state.terminated.exitCode}')" = 0 ]
# 0.1.1's hardware has one migration 0.1.0 lacks (cargo xtask cluster builds it so).
db_sql() { kn exec db-0 -c mariadb -- bash -c 'MYSQL_PWD=$(cat /run/secrets/db-root-password) mariadb -uroot -N -e "$0"' "$1"; }
applied=$(db_sql "SELECT COUNT(*) FROM hardware._sqlx_migrations WHERE version = 20991231000000 AND success = 1")
figure "the new release's own migration (20991231000000) applied: $applied"
check "prod: the migration only the new release has was applied by its pods, no manual step" [ "$applied" = 1 ]
check "prod: its table exists" db_sql "SELECT COUNT(*) FROM hardware.cluster_next_release"
# A rollback: the old release's pods migrate against the newer database and serve again.
started=$SECONDS
kn rollout undo deployment/hardware > /dev/null
check "prod: a rollback to 0.1.0 rolls out (its init container accepts the newer database)" \
  kn rollout status deployment/hardware --timeout 150s > /dev/null
figure "rollback done after $((SECONDS - started)) s"
check "prod: no migrate Job exists to delete by hand" [ -z "$(kn get jobs -o name)" ]

echo "== the database pod deleted: data survives"
csv=$(mktemp)
{ echo "provider,name"; for i in $(seq 1 200); do echo "K8s,\"item $i\""; done; } > "$csv"
imported=$(kn exec -i deploy/hardware -c hardware -- hardware items import - < "$csv" 2>&1)
figure "items import: $imported"
check "200 items imported" grep -q 'added 200' <<< "$imported"
rm -f "$csv"
# Items of the import that replica `$1` serves (its own export; -1 when the export fails).
served_by() {
  local out
  out=$(kn exec "$1" -c hardware -- hardware items export 2> /dev/null) || { echo -1; return; }
  grep -c '^K8s,' <<< "$out"
}
# Every hardware replica serves all 200 items, each within 60 s of the database being back.
# Asked of each replica, not of `deploy/hardware` (kubectl picks any pod, Ready or not): a replica
# keeps serving its last snapshot while it cannot reach the database (by design), and takes one
# refresh (INVENTORY_REFRESH) once it can, so the first answer after a restart may be stale.
every_replica_serves_all() {
  local deadline=$((SECONDS + 60)) pod n replicas=0
  for pod in $(kn get pods -l app.kubernetes.io/name=hardware -o name); do
    replicas=$((replicas + 1))
    until n=$(served_by "$pod"); [ "$n" = 200 ]; do
      [ $SECONDS -lt $deadline ] || { figure "$pod serves $n of 200 after 60 s"; return 1; }
      sleep 1
    done
  done
  figure "all $replicas hardware replicas serve the 200 imported items, $((SECONDS - started)) s after the database pod was deleted"
}
started=$SECONDS
kn delete pod db-0 --wait=true > /dev/null
check "prod: db-0 is back and Ready" quiet kn wait --for=condition=Ready pod/db-0 --timeout 120s
readyz_ok() { local deadline=$((SECONDS + 60)); until probe curl -fsS --max-time 3 -o /dev/null "http://hardware.$NS.svc.cluster.local:5001/readyz"; do [ $SECONDS -lt $deadline ] || return 1; sleep 1; done; }
check "prod: hardware readiness recovers" readyz_ok
figure "database pod replaced and hardware ready again after $((SECONDS - started)) s"
check "prod: every hardware pod Ready again" quiet kn wait --for=condition=Ready pod -l app.kubernetes.io/name=hardware --timeout 90s
check "prod: all 200 imported items survived (PVC), on every hardware replica" every_replica_serves_all

echo "== the backup CronJob's dump restores into an empty database"
kn create job backup-now --from=cronjob/db-backup > /dev/null
check "the backup Job completes" quiet kn wait --for=condition=Complete job/backup-now --timeout 120s
figure "backup: $(kn logs job/backup-now 2>&1 | tail -1)"
# The export's first line is its CSV header.
live=$(kn exec deploy/hardware -c hardware -- hardware items export 2> /dev/null | tail -n +2 | grep -c .)
kn apply -f - > /dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: restore-check
  labels: {app.kubernetes.io/name: restore-check}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, fsGroup: 999, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: restore
      image: hp-ci/mariadb:10.11
      imagePullPolicy: IfNotPresent
      command: [/bin/bash, -c]
      args:
        - |
          set -euo pipefail
          dump=$(ls -1t /backup/hardware-*.sql.gz | head -1)
          mariadb-install-db --no-defaults --datadir=/tmp/db --auth-root-authentication-method=normal --skip-test-db > /dev/null
          mariadbd --no-defaults --datadir=/tmp/db --socket=/tmp/db.sock --skip-networking --skip-log-bin 2> /tmp/mariadbd.log &
          for _ in $(seq 60); do mariadb -S /tmp/db.sock -uroot -e 'SELECT 1' > /dev/null 2>&1 && break; sleep 0.5; done
          echo "empty server: $(mariadb -S /tmp/db.sock -uroot -N -e "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = 'hardware'") hardware schemas"
          zcat "$dump" | mariadb -S /tmp/db.sock -uroot
          echo "restored rows: $(mariadb -S /tmp/db.sock -uroot -N -e 'SELECT COUNT(*) FROM hardware.hardware') from $dump"
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
      volumeMounts:
        - {name: backup, mountPath: /backup, readOnly: true}
        - {name: tmp, mountPath: /tmp}
  volumes:
    - {name: backup, persistentVolumeClaim: {claimName: db-backup}}
    - {name: tmp, emptyDir: {}}
EOF
restore_done() { local deadline=$((SECONDS + 120)) phase; while [ $SECONDS -lt $deadline ]; do
  phase=$(kn get pod restore-check -o jsonpath='{.status.phase}'); [ "$phase" = Succeeded ] && return 0; [ "$phase" = Failed ] && return 1; sleep 2; done; return 1; }
check "the restore pod succeeds" restore_done
restored=$(kn logs restore-check 2>&1)
sed 's/^/k8s figure: restore: /' <<< "$restored"
check "the empty server had no hardware schema before the restore" grep -q '^empty server: 0 hardware schemas' <<< "$restored"
check "the dump restores every row of the live table ($live)" grep -q "^restored rows: $live from" <<< "$restored"

echo "== the NetworkPolicy engine"
# The whole proof ran with the policies enforced: the engine must still be the one that started.
engine_alive() { [ -n "${NETPOL_PIDFILE:-}" ] && kill -0 "$(cat "$NETPOL_PIDFILE")" 2> /dev/null; }
check "the NetworkPolicy engine ran through the whole proof (pid file ${NETPOL_PIDFILE:-unset})" engine_alive

echo "== cleanup"
delete_stack
k delete namespace monitoring --wait=false > /dev/null 2>&1
echo "k8s: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
