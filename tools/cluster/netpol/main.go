// Command netpol enforces Kubernetes NetworkPolicies on the single-node test cluster by running
// kube-router v2.1.0's NetworkPolicy controller (pkg/controllers/netpol) and nothing else, the way
// k3s embeds it (k3s pkg/agent/netpol/netpol.go): IPv4 only, iptables + ipset on the host.
//
// Only the netpol controller is linked on purpose: no service proxy (kube-proxy stays in iptables
// mode), no routing controller (so no GoBGP and no gRPC server), no health/metrics HTTP servers.
// It needs `iptables`, `iptables-save`, `iptables-restore` and `ipset` on PATH (Debian packages
// iptables and ipset), root, and br_netfilter with bridge-nf-call-iptables=1 so that traffic
// between pods on the same bridge passes through the FORWARD chain.
//
// It runs until SIGTERM or SIGINT, then closes the stop channel and waits for the controller.
// The iptables chains and ipsets it made are left in place (as k3s does) unless
// --cleanup-on-exit is given.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	"github.com/cloudnativelabs/kube-router/v2/pkg/utils"
	"github.com/coreos/go-iptables/iptables"
	v1core "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

// firstSyncProbe wraps the IPv4 ipset handler to notice when the first full sync has been
// applied. In kube-router v2.1.0, fullPolicySync calls Sets() only from cleanupStaleIPSets, its
// last step, after iptables-restore succeeded; an aborted sync never gets there. If a later
// kube-router calls Sets() elsewhere, only the log line below becomes early: nothing else
// depends on it.
type firstSyncProbe struct {
	utils.IPSetHandler
	once sync.Once
	done chan struct{}
}

func (p *firstSyncProbe) Sets() map[string]*utils.Set {
	p.once.Do(func() { close(p.done) })
	return p.IPSetHandler.Sets()
}

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("netpol", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "path to a kubeconfig (empty: in-cluster config)")
	hostname := fs.String("hostname-override", "",
		"name of this node's Node object (empty: $NODE_NAME, then the host name)")
	serviceRange := fs.String("service-cluster-ip-range", "10.96.0.0/12",
		"service ClusterIP CIDR (IPv4); traffic to it is let through KUBE-ROUTER-INPUT")
	nodePortRange := fs.String("service-node-port-range", "30000-32767",
		"NodePort range (a-b or a:b); local traffic to it is let through KUBE-ROUTER-INPUT")
	syncPeriod := fs.Duration("sync-period", 30*time.Second,
		"period of the full resync; changes to pods, namespaces and policies resync at once")
	nodeWait := fs.Duration("node-wait", 2*time.Minute,
		"how long to wait for the Node object to exist with an IPv4 address")
	cleanup := fs.Bool("cleanup-on-exit", false,
		"on SIGTERM/SIGINT, remove the KUBE-ROUTER-* / KUBE-POD-FW-* / KUBE-NWPLCY-* chains and KUBE-SRC-/KUBE-DST- ipsets")
	verbosity := fs.Int("v", 0, "kube-router (klog) log verbosity; 1 logs every sync, 2 every rule change")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: netpol [flags]\n\nRuns only kube-router v2.1.0's "+
			"NetworkPolicy controller (IPv4, iptables + ipset) until SIGTERM/SIGINT.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "netpol: unexpected arguments: %v\n", fs.Args())
		return 2
	}

	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	_ = klogFlags.Set("v", strconv.Itoa(*verbosity))
	defer klog.Flush()

	if err := checkFlags(*serviceRange, *syncPeriod); err != nil {
		klog.Errorf("netpol: %v", err)
		return 2
	}
	for _, bin := range []string{"iptables", "iptables-save", "iptables-restore", "ipset"} {
		if _, err := exec.LookPath(bin); err != nil {
			klog.Errorf("netpol: %s not found on PATH (install the Debian packages iptables and ipset)", bin)
			return 1
		}
	}

	// kube-router's utils.GetNodeObject tries $NODE_NAME, then os.Hostname(), and only then
	// --hostname-override; exporting the flag as NODE_NAME makes the flag win.
	nodeName := *hostname
	if nodeName != "" {
		if err := os.Setenv("NODE_NAME", nodeName); err != nil {
			klog.Errorf("netpol: %v", err)
			return 1
		}
	} else if nodeName = os.Getenv("NODE_NAME"); nodeName == "" {
		nodeName, _ = os.Hostname()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	restConfig, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		klog.Errorf("netpol: kubeconfig: %v", err)
		return 1
	}
	restConfig.UserAgent = "hardware-portal-netpol (kube-router v2.1.0 netpol)"
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		klog.Errorf("netpol: client: %v", err)
		return 1
	}

	// NewNetworkPolicyController reads the Node once and fails without an IPv4 InternalIP or
	// ExternalIP (it picks up this node's pods by pod.status.hostIP == that address), so wait
	// for the kubelet to register it, as k3s does.
	err = wait.PollUntilContextTimeout(ctx, 2*time.Second, *nodeWait, true,
		func(ctx context.Context) (bool, error) {
			node, err := client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
			if err != nil {
				klog.Infof("netpol: waiting for Node %q: %v", nodeName, err)
				return false, nil
			}
			ipv4, _ := utils.GetAllNodeIPs(node)
			if len(ipv4[v1core.NodeInternalIP]) == 0 && len(ipv4[v1core.NodeExternalIP]) == 0 {
				klog.Infof("netpol: waiting for Node %q to report an IPv4 address", nodeName)
				return false, nil
			}
			return true, nil
		})
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		klog.Errorf("netpol: Node %q not ready within %v: %v", nodeName, *nodeWait, err)
		return 1
	}

	krConfig := options.NewKubeRouterConfig()
	krConfig.Kubeconfig = *kubeconfig
	krConfig.HostnameOverride = nodeName
	krConfig.ClusterIPCIDRs = []string{*serviceRange}
	krConfig.NodePortRange = *nodePortRange
	krConfig.IPTablesSyncPeriod = *syncPeriod
	krConfig.EnableIPv4 = true
	krConfig.EnableIPv6 = false
	krConfig.MetricsEnabled = false
	krConfig.RunFirewall = true
	krConfig.RunRouter = false
	krConfig.RunServiceProxy = false
	krConfig.RunLoadBalancer = false

	stopCh := make(chan struct{})
	var stopOnce sync.Once
	closeStop := func() { stopOnce.Do(func() { close(stopCh) }) }
	defer closeStop()

	factory := informers.NewSharedInformerFactory(client, 0)
	podInformer := factory.Core().V1().Pods().Informer()
	nsInformer := factory.Core().V1().Namespaces().Informer()
	npInformer := factory.Networking().V1().NetworkPolicies().Informer()
	factory.Start(stopCh)
	defer factory.Shutdown()
	go func() {
		<-ctx.Done()
		closeStop()
	}()
	for typ, ok := range factory.WaitForCacheSync(stopCh) {
		if !ok {
			if ctx.Err() != nil {
				return 0
			}
			klog.Errorf("netpol: informer cache for %v did not sync", typ)
			return 1
		}
	}

	ipt, err := iptables.NewWithProtocol(iptables.ProtocolIPv4)
	if err != nil {
		klog.Errorf("netpol: iptables handler: %v", err)
		return 1
	}
	ipset, err := utils.NewIPSet(false)
	if err != nil {
		klog.Errorf("netpol: ipset handler: %v", err)
		return 1
	}
	if err := ipset.Save(); err != nil {
		klog.Errorf("netpol: ipset save failed (kernel without ip_set?): %v", err)
		return 1
	}
	probe := &firstSyncProbe{IPSetHandler: ipset, done: make(chan struct{})}
	iptablesHandlers := map[v1core.IPFamily]utils.IPTablesHandler{v1core.IPv4Protocol: ipt}
	ipsetHandlers := map[v1core.IPFamily]utils.IPSetHandler{v1core.IPv4Protocol: probe}

	var ipsetMutex sync.Mutex
	npc, err := netpol.NewNetworkPolicyController(client, krConfig, podInformer, npInformer, nsInformer,
		&ipsetMutex, iptablesHandlers, ipsetHandlers)
	if err != nil {
		klog.Errorf("netpol: unable to initialize the network policy controller: %v", err)
		return 1
	}
	for _, reg := range []struct {
		name string
		err  error
	}{
		{"pods", addHandler(podInformer.AddEventHandler(npc.PodEventHandler))},
		{"namespaces", addHandler(nsInformer.AddEventHandler(npc.NamespaceEventHandler))},
		{"networkpolicies", addHandler(npInformer.AddEventHandler(npc.NetworkPolicyEventHandler))},
	} {
		if reg.err != nil {
			klog.Errorf("netpol: event handler for %s: %v", reg.name, reg.err)
			return 1
		}
	}

	// Every full sync sends a heartbeat on this channel with a blocking send, while holding the
	// controller's lock: something must keep reading it until the controller has stopped.
	healthCh := make(chan *healthcheck.ControllerHeartbeat, 8)
	drained := make(chan struct{})
	stopDrain := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-healthCh:
			case <-stopDrain:
				return
			}
		}
	}()

	started := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go npc.Run(healthCh, stopCh, &wg)
	klog.Infof("netpol: network policy controller started (node %q, services %s, node ports %s, sync every %v)",
		nodeName, *serviceRange, *nodePortRange, *syncPeriod)

	select {
	case <-probe.done:
		klog.Infof("netpol: first full sync applied after %v (iptables-restore done)",
			time.Since(started).Round(time.Millisecond))
	case <-ctx.Done():
	}

	<-ctx.Done()
	klog.Infof("netpol: signal received, stopping")
	closeStop()
	finished := make(chan struct{})
	go func() {
		wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		klog.Errorf("netpol: controller did not stop within 30s")
		return 1
	}
	if *cleanup {
		npc.Cleanup()
	}
	close(stopDrain)
	<-drained
	klog.Infof("netpol: stopped")
	return 0
}

func addHandler(_ interface{}, err error) error { return err }

func checkFlags(serviceRange string, syncPeriod time.Duration) error {
	ip, _, err := net.ParseCIDR(serviceRange)
	if err != nil {
		return fmt.Errorf("--service-cluster-ip-range: %v", err)
	}
	if ip.To4() == nil {
		return fmt.Errorf("--service-cluster-ip-range: %s is not IPv4 (only IPv4 is enabled)", serviceRange)
	}
	if syncPeriod < time.Second {
		return fmt.Errorf("--sync-period: %v is shorter than 1s", syncPeriod)
	}
	return nil
}
