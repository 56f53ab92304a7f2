#!/usr/bin/env bash
# A real single-node Kubernetes on this machine, from the binaries `cargo xtask cluster` builds
# from the Go module proxy (target/tools/), Debian's containerd, runc and CNI plugins.
#
#   cluster.sh up      start etcd, the control plane, containerd, the kubelet, kube-proxy, the
#                      NetworkPolicy engine (kube-router's policy controller) and the add-ons (CoreDNS, metrics-server, local-path provisioner); print the
#                      kubeconfig path
#   cluster.sh down    stop all of it and remove every trace (mounts, links, iptables chains)
#
# Everything it makes lives under $CLUSTER_DIR (default target/cluster) and on a link
# `hp-node` (10.250.0.1, a bridge with no ports: this kernel has no dummy links): the node's address is one this script created, so no traffic of the
# cluster leaves the machine. Root only (a kubelet has to be).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOOLS=${TOOLS_DIR:-$ROOT/target/tools}
D=${CLUSTER_DIR:-$ROOT/target/cluster}
KUBE=$TOOLS/kube
NODE_IP=10.250.0.1
NODE=hp-node
API_PORT=16443
ETCD_PORT=23790
POD_CIDR=10.244.0.0/24
SERVICE_CIDR=10.96.0.0/16
DNS_IP=10.96.0.10
BRIDGE=hp-cni0
NS=k8s.io

log() { printf 'cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

ctr_() { ctr --address "$D/containerd.sock" --namespace "$NS" "$@"; }
kubectl_() { "$KUBE" kubectl --kubeconfig "$D/admin.kubeconfig" "$@"; }

# Starts a daemon in the background, its output in $D/logs/NAME.log and its PID in $D/pids/NAME.
start() {
    local name=$1
    shift
    "$@" >"$D/logs/$name.log" 2>&1 &
    echo $! >"$D/pids/$name"
}

wait_for() {
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "$what not ready within ${seconds}s (logs in $D/logs)"
        sleep 0.5
    done
    log "$what ready after $((seconds - (deadline - SECONDS)))s"
}

# --- certificates -----------------------------------------------------------------------------

pki() {
    mkdir -p "$D/pki"
    for ca in ca front-proxy-ca; do
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$D/pki/$ca.key" -out "$D/pki/$ca.crt" \
            -days 7 -subj "/CN=hp-cluster-$ca" 2>/dev/null
    done
    signed apiserver kube-apiserver "" \
        "IP:$NODE_IP,IP:127.0.0.1,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost"
    signed kubelet "system:node:$NODE" system:nodes "IP:$NODE_IP,DNS:$NODE"
    signed apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
    signed admin admin system:masters
    signed controller-manager system:kube-controller-manager ""
    signed scheduler system:kube-scheduler ""
    signed proxy system:kube-proxy ""
    CA=front-proxy-ca signed front-proxy-client front-proxy-client ""
    openssl genrsa -out "$D/pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$D/pki/sa.key" -pubout -out "$D/pki/sa.pub" 2>/dev/null
}

signed() { # name CN O [SAN]; signed by $CA (default ca)
    local name=$1 cn=$2 org=$3 san=${4:-} ca=${CA:-ca}
    local subject="/CN=$cn"
    [[ -n $org ]] && subject="/O=$org$subject"
    openssl req -newkey rsa:2048 -nodes -keyout "$D/pki/$name.key" -subj "$subject" \
        -out "$D/pki/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=digitalSignature,keyEncipherment"
        if [[ -n $san ]]; then
            echo "extendedKeyUsage=serverAuth,clientAuth"
            echo "subjectAltName=$san"
        else
            echo "extendedKeyUsage=clientAuth"
        fi
    } >"$D/pki/$name.ext"
    openssl x509 -req -in "$D/pki/$name.csr" -CA "$D/pki/$ca.crt" -CAkey "$D/pki/$ca.key" \
        -CAcreateserial -days 7 -extfile "$D/pki/$name.ext" -out "$D/pki/$name.crt" 2>/dev/null
}

kubeconfig() { # name cert
    cat >"$D/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: hp
    cluster:
      server: https://$NODE_IP:$API_PORT
      certificate-authority: $D/pki/ca.crt
users:
  - name: $1
    user:
      client-certificate: $D/pki/$2.crt
      client-key: $D/pki/$2.key
contexts:
  - name: hp
    context: {cluster: hp, user: $1}
current-context: hp
EOF
}

# --- the node -----------------------------------------------------------------------------------

node_network() {
    ip link show "$NODE" >/dev/null 2>&1 || ip link add "$NODE" type bridge
    ip addr replace "$NODE_IP/32" dev "$NODE"
    ip link set "$NODE" up

    sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1
}

containerd_config() {
    mkdir -p "$D/containerd" "$D/cni/net.d" "$D/cni/ipam"
    cat >"$D/containerd/config.toml" <<EOF
version = 2
root = "$D/containerd/root"
state = "$D/containerd/state"
[grpc]
  address = "$D/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/hp/pause:1"
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  # This machine's root lacks CAP_SYS_RESOURCE (not in the bounding set), so no process may lower
  # its oom_score_adj: the pod sandbox's default of -998 fails inside runc ("can't get final
  # child's PID from pipe: EOF"). Clamp every container's score to containerd's own instead.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$D/cni/net.d"
EOF
    cat >"$D/cni/net.d/10-hp.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "hp",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]],
               "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$D/cni/ipam"}
    },
    {"type": "firewall"},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

kubelet_config() {
    mkdir -p "$D/kubelet" "$D/pod-logs"
    echo "nameserver $NODE_IP" >"$D/resolv.conf"
    cat >"$D/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $D/pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $D/pki/kubelet.crt
tlsPrivateKeyFile: $D/pki/kubelet.key
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$D/containerd.sock
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $D/resolv.conf
podLogsDir: $D/pod-logs
failSwapOn: false
failCgroupV1: false
serializeImagePulls: false
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
EOF
    cat >"$D/proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clientConnection: {kubeconfig: $D/proxy.kubeconfig}
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

control_plane() {
    start etcd "$KUBE" etcd --name hp --data-dir "$D/etcd" --unsafe-no-fsync \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
        --initial-cluster hp=http://127.0.0.1:23800 --listen-metrics-urls http://127.0.0.1:23810
    wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
    local p=$D/pki
    start apiserver "$KUBE" apiserver --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address "$NODE_IP" --advertise-address "$NODE_IP" --secure-port "$API_PORT" \
        --service-cluster-ip-range "$SERVICE_CIDR" --allow-privileged=false \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
        --kubelet-client-certificate "$p/apiserver-kubelet-client.crt" --kubelet-client-key "$p/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$p/ca.crt" --kubelet-preferred-address-types InternalIP \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
        --requestheader-client-ca-file "$p/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --proxy-client-cert-file "$p/front-proxy-client.crt" --proxy-client-key-file "$p/front-proxy-client.key" \
        --enable-aggregator-routing=true
    wait_for kube-apiserver 90 curl -sf --cacert "$p/ca.crt" "https://$NODE_IP:$API_PORT/readyz"
    start controller-manager "$KUBE" controller-manager --kubeconfig "$D/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$D/controller-manager.kubeconfig" --authorization-kubeconfig "$D/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false --use-service-account-credentials \
        --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
        --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" --allocate-node-cidrs=false \
        --requestheader-client-ca-file "$p/front-proxy-ca.crt"
    start scheduler "$KUBE" scheduler --kubeconfig "$D/scheduler.kubeconfig" \
        --authentication-kubeconfig "$D/scheduler.kubeconfig" --authorization-kubeconfig "$D/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false
}

node_daemons() {
    start containerd containerd --config "$D/containerd/config.toml"
    wait_for containerd 30 ctr_ version
    load_images
    start kubelet "$KUBE" kubelet --config "$D/kubelet.yaml" --kubeconfig "$D/kubelet.kubeconfig" \
        --root-dir "$D/kubelet" --node-ip "$NODE_IP" --hostname-override "$NODE"
    start proxy "$KUBE" proxy --config "$D/proxy.yaml"
    wait_for "node $NODE" 90 node_ready
    policy_engine
}

# NetworkPolicy enforcement: kube-router's policy controller alone (tools/cluster/netpol), on
# iptables and ipset. The bridge CNI enforces nothing by itself; with br_netfilter, traffic
# between pods on the bridge passes the FORWARD chain, where this engine's chains sit first.
# A long resync period: changes to pods, namespaces and policies resync at once anyway.
policy_engine() {
    [[ -x $TOOLS/netpol ]] || die "no $TOOLS/netpol: build it with cargo xtask cluster"
    command -v ipset >/dev/null || die "the policy engine needs ipset (apt-get install ipset)"
    [[ $(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null) == 1 ]] ||
        die "the policy engine needs bridge-nf-call-iptables=1 (br_netfilter), or traffic on the bridge escapes it"
    start netpol "$TOOLS/netpol" --kubeconfig "$D/admin.kubeconfig" --hostname-override "$NODE" \
        --service-cluster-ip-range "$SERVICE_CIDR" --service-node-port-range 30000-32767 \
        --sync-period 5m --cleanup-on-exit
    local deadline=$((SECONDS + 60))
    until grep -q 'first full sync applied' "$D/logs/netpol.log" 2>/dev/null; do
        if ! kill -0 "$(cat "$D/pids/netpol")" 2>/dev/null || ((SECONDS >= deadline)); then
            log "the NetworkPolicy engine did not come up; its log:"
            tail -30 "$D/logs/netpol.log" >&2
            die "no NetworkPolicy engine: refusing to run a proof whose policies nobody enforces"
        fi
        sleep 0.5
    done
    log "NetworkPolicy engine (kube-router's policy controller) enforcing: $(grep -o 'first full sync applied after [^ ]*' "$D/logs/netpol.log")"
}

node_ready() {
    [[ $(kubectl_ get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

# Images: packed here (no registry) and imported into the cluster's containerd. The add-ons and
# the pod sandbox are one static binary each; CLUSTER_IMAGES names Docker images to copy in too.
addon_images() {
    local dir name tag binary
    for spec in pause:1:pause coredns:1.12.1:coredns metrics-server:0.8.0:metrics-server \
        local-path-provisioner:0.0.30:local-path-provisioner; do
        IFS=: read -r name tag binary <<<"$spec"
        [[ -x $TOOLS/$binary ]] || die "no $TOOLS/$binary: build it with cargo xtask cluster"
        dir=$(mktemp -d)
        cp "$TOOLS/$binary" "$dir/$binary"
        tar -C "$dir" -c "$binary" | docker import -c "ENTRYPOINT [\"/$binary\"]" - "localhost/hp/$name:$tag" >/dev/null
        rm -rf "$dir"
    done
}

load_images() {
    addon_images
    local images=(${CLUSTER_IMAGES:-} localhost/hp/pause:1 localhost/hp/coredns:1.12.1
        localhost/hp/metrics-server:0.8.0 localhost/hp/local-path-provisioner:0.0.30 hp-ci/debian:bookworm-slim)
    log "importing ${#images[@]} images into containerd"
    docker save "${images[@]}" | ctr_ images import - >/dev/null
}

addons() {
    mkdir -p "$D/local-path"
    sed "s#@LOCAL_PATH_DIR@#$D/local-path#" "$ROOT/tools/cluster/addons.yaml" | kubectl_ apply -f - >/dev/null
    for d in kube-system/coredns kube-system/metrics-server local-path-storage/local-path-provisioner; do
        kubectl_ -n "${d%/*}" rollout status "deployment/${d#*/}" --timeout 120s >/dev/null \
            || die "add-on $d not ready (kubectl -n ${d%/*} describe pod)"
    done
    wait_for "metrics API" 120 kubectl_ top node
}

up() {
    [[ $(id -u) == 0 ]] || die "the cluster needs root (a kubelet manages mounts, cgroups and iptables)"
    [[ -x $KUBE ]] || die "no $KUBE: build it with cargo xtask cluster"
    # `down` removes every KUBE-*/CNI-* chain and cni-* netns: on a machine that already runs
    # Kubernetes (or another of these test clusters) it would break that one. Refuse instead,
    # unless the chains are this cluster's own, left by a run that did not finish.
    if [[ -e $D/pids ]]; then
        down
    elif iptables -S 2>/dev/null | grep -q '^-N KUBE-' || iptables -t nat -S 2>/dev/null | grep -q '^-N KUBE-'; then
        die "this machine already runs a Kubernetes node (KUBE-* iptables chains exist); the test cluster would fight it"
    fi
    rm -rf "$D"
    mkdir -p "$D/logs" "$D/pids"
    pki
    kubeconfig admin admin
    kubeconfig controller-manager controller-manager
    kubeconfig scheduler scheduler
    kubeconfig kubelet kubelet
    kubeconfig proxy proxy
    node_network
    containerd_config
    kubelet_config
    control_plane
    node_daemons
    addons
    log "up in ${SECONDS}s; KUBECONFIG=$D/admin.kubeconfig"
    echo "$D/admin.kubeconfig"
}

stop_pid() {
    local file=$1 pid
    pid=$(cat "$file" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
}

down() {
    log "tearing down"
    set +e # best effort: every step runs whatever the one before it found
    # The policy engine first, while the API still answers: it removes its chains and sets.
    for name in netpol proxy kubelet scheduler controller-manager; do stop_pid "$D/pids/$name"; done
    # The pods: every task killed and removed while containerd still runs (their shims exit too).
    if [[ -S $D/containerd.sock ]]; then
        for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$task" 2>/dev/null || true; done
        sleep 1
        for task in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$task" 2>/dev/null || true; done
        for c in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers delete "$c" 2>/dev/null || true; done
    fi
    for name in containerd apiserver etcd; do stop_pid "$D/pids/$name"; done
    # Whatever is still mounted under the cluster folder (kubelet volumes, sandbox shm, rootfs),
    # deepest first.
    grep -o " $D/[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    for ns in /var/run/netns/cni-*; do
        [[ -e $ns ]] || continue
        umount "$ns" 2>/dev/null || true
        rm -f "$ns"
    done
    [[ -x $KUBE ]] && "$KUBE" proxy --cleanup >/dev/null 2>&1 || true
    iptables_cleanup
    # The policy engine's address sets, should it have died before removing them.
    if command -v ipset >/dev/null; then
        ipset list -n 2>/dev/null | grep -E '^KUBE-(SRC|DST)-' | while read -r set; do ipset destroy "$set" 2>/dev/null || true; done
    fi
    ip link del "$BRIDGE" 2>/dev/null || true
    ip link del "$NODE" 2>/dev/null || true
    rm -rf "$D/pids"
    set -e
}

# The chains the kubelet, kube-proxy and the CNI plugins made (KUBE-*, CNI-*): every rule that
# jumps to one, then the chains themselves. Docker's chains are left alone.
iptables_cleanup() {
    local tool table
    for tool in iptables ip6tables; do
        command -v "$tool" >/dev/null || continue
        for table in nat filter mangle; do
            "$tool" -t "$table" -S 2>/dev/null | grep -E '^-A .*-j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-' |
                sed 's/^-A/-D/' | while read -r rule; do
                eval "$tool" -t "$table" "$rule" 2>/dev/null || true
            done
            "$tool" -t "$table" -S 2>/dev/null | grep -E '^-N (KUBE|CNI)-' | cut -d' ' -f2 | while read -r chain; do
                "$tool" -t "$table" -F "$chain" 2>/dev/null || true
            done
            "$tool" -t "$table" -S 2>/dev/null | grep -E '^-N (KUBE|CNI)-' | cut -d' ' -f2 | while read -r chain; do
                "$tool" -t "$table" -X "$chain" 2>/dev/null || true
            done
        done
    done
}

case ${1:-} in
    up) up ;;
    down) down ;;
    *) die "usage: cluster.sh up|down" ;;
esac
