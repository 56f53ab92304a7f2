# Connectivity matrix of the stack's network policies, probed on the live, enforcing cluster.
# Sourced by cluster-e2e.sh, which defines k, kn, check, pass, fail, figure, NS and NODE_IP.
#
# A source is a pod this file creates, carrying the label the policies select a workload by
# (app.kubernetes.io/name), so the policies treat it as that workload: the stack's own images
# have no shell to probe from. Its readiness probe never passes, so no Service sends it
# traffic and no disruption budget counts it. A flow is one TCP connect (`nc -z`, 3 s timeout)
# to a Service's ClusterIP (through kube-proxy, as the workloads connect) or a pod's address;
# every destination listens, so "denied" can only mean the policy said no.
#
#   matrix_up                create the sources (namespaces $NS, outsider) and a listener
#   matrix LABEL [backup]    probe every flow, print the table, one check per flow
#   matrix_control KUSTOMIZATION
#                            the negative control: without the policies a denied flow opens,
#                            with them back it closes again, each within a printed bound
#   matrix_down              delete what matrix_up created

MATRIX_PROBE=localhost/hp/probe:1
MATRIX_OUTSIDER=outsider

matrix_pod() { # namespace name app-label|- command...
  local ns=$1 name=$2 app=$3 labels="hp.test/matrix: probe"
  shift 3
  [ "$app" = - ] || labels="$labels, app.kubernetes.io/name: $app"
  k apply -f - > /dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
  namespace: $ns
  labels: {$labels}
spec:
  terminationGracePeriodSeconds: 0
  automountServiceAccountToken: false
  securityContext: {runAsNonRoot: true, runAsUser: 65534, runAsGroup: 65534, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: probe
      image: $MATRIX_PROBE
      imagePullPolicy: Never
      command: [$(printf '"%s", ' "$@" | sed 's/, $//')]
      readinessProbe: {exec: {command: ["false"]}, periodSeconds: 300}
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
EOF
}

matrix_up() {
  k create namespace "$MATRIX_OUTSIDER" > /dev/null 2>&1 || true
  local app
  for app in portal hardware db redis db-backup; do matrix_pod "$NS" "as-$app" "$app" sleep infinity; done
  matrix_pod "$MATRIX_OUTSIDER" stranger - sleep infinity
  matrix_pod "$MATRIX_OUTSIDER" as-portal portal sleep infinity
  matrix_pod "$MATRIX_OUTSIDER" listener - nc -lk 8080
  check "the matrix's probe pods are running" quiet k wait --for=jsonpath='{.status.phase}'=Running \
    pod -l hp.test/matrix=probe -A --timeout 90s
}

matrix_down() {
  kn delete pod -l hp.test/matrix=probe --wait=false > /dev/null 2>&1
  k delete namespace "$MATRIX_OUTSIDER" --wait=false > /dev/null 2>&1
}

# The address of a workload's first pod (never one of the matrix's own).
matrix_pod_ip() { kn get pods -l "app.kubernetes.io/name=$1,!hp.test/matrix" -o jsonpath='{.items[0].status.podIP}'; }
# A Service's ClusterIP; for a headless Service (db), the address of its first pod.
matrix_svc_ip() {
  local ip
  ip=$(kn get svc "$1" -o jsonpath='{.spec.clusterIP}')
  if [ "$ip" = None ]; then matrix_pod_ip "$1"; else echo "$ip"; fi
}

# Exit 0 when namespace/pod connects to address:port within 3 s.
matrix_connects() { # namespace/pod address port
  k -n "${1%/*}" exec "${1#*/}" -- nc -z -w 3 "$2" "$3" > /dev/null 2>&1
}

matrix() { # label [backup]
  local label=$1 with_backup=${2:-} flows=() flow src dst addr port want seen waited unexpected=0
  local portal hardware_pod portal_pod db redis listener node_port
  portal=$(matrix_svc_ip portal); db=$(matrix_svc_ip db); redis=$(matrix_svc_ip redis)
  hardware_pod=$(matrix_pod_ip hardware); portal_pod=$(matrix_pod_ip portal)
  listener=$(k -n "$MATRIX_OUTSIDER" get pod listener -o jsonpath='{.status.podIP}')
  node_port=$(kn get svc portal-external -o jsonpath='{.spec.ports[0].nodePort}')
  # source | destination (what) | address | port | expected
  flows+=(
    "$NS/as-portal|hardware pod :5001|$hardware_pod|5001|allowed"
    "$NS/as-hardware|db :3306|$db|3306|allowed"
    "$NS/as-hardware|redis Service :6379|$redis|6379|allowed"
    "$NS/as-portal|cluster DNS :53|10.96.0.10|53|allowed"
    "$NS/as-hardware|cluster DNS :53|10.96.0.10|53|allowed"
    "$NS/as-db|cluster DNS :53|10.96.0.10|53|allowed"
    "$NS/as-redis|cluster DNS :53|10.96.0.10|53|allowed"
    "monitoring/probe|portal pod :9090 (metrics)|$portal_pod|9090|allowed"
    "monitoring/probe|hardware pod :5001 (metrics)|$hardware_pod|5001|allowed"
    "$MATRIX_OUTSIDER/stranger|portal Service :5000|$portal|5000|allowed"
    "$MATRIX_OUTSIDER/stranger|NodePort $node_port -> portal|$NODE_IP|$node_port|allowed"
    "$NS/as-portal|db :3306|$db|3306|denied"
    "$NS/as-portal|redis Service :6379|$redis|6379|denied"
    "$NS/as-portal|a pod in $MATRIX_OUTSIDER :8080|$listener|8080|denied"
    "$MATRIX_OUTSIDER/stranger|hardware pod :5001|$hardware_pod|5001|denied"
    "$MATRIX_OUTSIDER/stranger|db :3306|$db|3306|denied"
    "$MATRIX_OUTSIDER/stranger|redis Service :6379|$redis|6379|denied"
    "$MATRIX_OUTSIDER/stranger|portal pod :9090 (metrics)|$portal_pod|9090|denied"
    "$MATRIX_OUTSIDER/as-portal|hardware pod :5001|$hardware_pod|5001|denied"
    "$NS/as-hardware|a pod in $MATRIX_OUTSIDER :8080|$listener|8080|denied"
    "$NS/as-hardware|the node :16443 (API server)|$NODE_IP|16443|denied"
    "$NS/as-db|a pod in $MATRIX_OUTSIDER :8080|$listener|8080|denied"
    "$NS/as-redis|a pod in $MATRIX_OUTSIDER :8080|$listener|8080|denied"
    "$NS/as-db|redis Service :6379|$redis|6379|denied"
  )
  if [ -n "$with_backup" ]; then
    flows+=("$NS/as-db-backup|db :3306|$db|3306|allowed"
      "$NS/as-db-backup|redis Service :6379|$redis|6379|denied")
  fi
  printf 'k8s matrix %-5s %-30s %-34s %-8s %s\n' "" source destination expected seen
  for flow in "${flows[@]}"; do
    IFS='|' read -r src dst addr port want <<< "$flow"
    # A policy change takes the engine a moment: a flow that differs is asked again for up to
    # 10 s, and the wait is printed (the negative control measures that bound on purpose).
    waited=""
    for attempt in $(seq 0 10); do
      if matrix_connects "$src" "$addr" "$port"; then seen=allowed; else seen=denied; fi
      [ "$seen" = "$want" ] && break
      waited=" (still $seen after ${attempt} s)"
      sleep 1
    done
    [ "$seen" = "$want" ] && [ -n "$waited" ] && waited=" (as expected after ${attempt} s)"
    printf 'k8s matrix %-5s %-30s %-34s %-8s %s\n' "$label" "$src" "$dst" "$want" "$seen$waited"
    if [ "$seen" = "$want" ]; then passed=$((passed + 1)); else
      unexpected=$((unexpected + 1)); fail "$label: $src -> $dst is $seen, expected $want"
    fi
  done
  figure "$label matrix: ${#flows[@]} flows, $unexpected unexpected"
}

# Waits up to 30 s for namespace/pod -> address:port to be allowed|denied; prints the wait.
matrix_until() { # allowed|denied what source address port
  local want=$1 what=$2 started=$SECONDS seen
  shift 2
  while :; do
    if matrix_connects "$@"; then seen=allowed; else seen=denied; fi
    [ "$seen" = "$want" ] || [ $((SECONDS - started)) -ge 30 ] && break
    sleep 0.5
  done
  figure "control: $what, the flow was $seen after $((SECONDS - started)) s (bound 30 s)"
  [ "$seen" = "$want" ]
}

matrix_control() { # kustomization that puts the policies back
  local db flow
  db=$(matrix_svc_ip db)
  flow=("$MATRIX_OUTSIDER/stranger" "$db" 3306)
  check "control: $MATRIX_OUTSIDER/stranger -> db :3306 ($db) denied with the policies on" \
    fails matrix_connects "${flow[@]}"
  kn delete networkpolicy --all > /dev/null
  check "control: without the policies the same flow connects within 30 s (the network is not just broken)" \
    matrix_until allowed "policies deleted" "${flow[@]}"
  k apply -k "$1" > /dev/null
  check "control: with the policies back it is denied again within 30 s" \
    matrix_until denied "policies applied again" "${flow[@]}"
}
