package snat

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

var (
	podA = netip.MustParseAddr("10.244.1.7")
	podB = netip.MustParseAddr("10.244.2.9")
	node = netip.MustParseAddr("10.224.0.4")
)

func tcp(src netip.Addr, sport uint16, dst string, dport uint16) conntrack.Flow {
	d := netip.MustParseAddr(dst)
	return conntrack.Flow{Proto: protoTCP, Status: conntrack.StatusSrcNAT,
		Orig:  conntrack.Tuple{Src: src, Dst: d, SrcPort: sport, DstPort: dport},
		Reply: conntrack.Tuple{Src: d, Dst: node, SrcPort: dport, DstPort: sport}}
}

func udp(src netip.Addr, sport uint16, dst string, dport uint16) conntrack.Flow {
	f := tcp(src, sport, dst, dport)
	f.Proto = protoUDP
	return f
}

func aggregate(extra []netip.Prefix, flows ...conntrack.Flow) *Aggregator {
	a := NewAggregator(extra)
	for i := range flows {
		a.Add(&flows[i])
	}
	return a
}

// flows returns n flows made by mk(i).
func flows(n int, mk func(i int) conntrack.Flow) []conntrack.Flow {
	out := make([]conntrack.Flow, n)
	for i := range out {
		out[i] = mk(i)
	}
	return out
}

func TestTCPPortsReusedAcrossDestinations(t *testing.T) {
	// 300 flows to each of three (IP, port) pairs: a SNAT port serves all
	// three, so the demand is 300, not 900.
	var fs []conntrack.Flow
	for _, d := range []struct {
		ip   string
		port uint16
	}{{"20.50.2.1", 443}, {"20.50.2.1", 80}, {"52.1.1.1", 443}} {
		fs = append(fs, flows(300, func(i int) conntrack.Flow { return tcp(podA, uint16(10000+i), d.ip, d.port) })...)
	}
	fs = append(fs, tcp(podB, 999, "52.1.1.1", 443))
	s := aggregate(nil, fs...).Summary(10)
	if s.Public != 901 || s.Demand["tcp"] != 301 || s.Demand["udp"] != 0 {
		t.Fatalf("public %d, demand %v; want 901 public, tcp demand 301", s.Public, s.Demand)
	}
	if d := s.Destinations[0]; d.IP.String() != "52.1.1.1" || d.Port != 443 || d.Flows != 301 || d.Proto != "tcp" {
		t.Errorf("worst destination %+v, want 52.1.1.1:443/tcp with 301 flows", d)
	}
}

func TestUDPCountedPerDestinationIP(t *testing.T) {
	// UDP spends one port per destination IP whatever the port.
	fs := flows(200, func(i int) conntrack.Flow { return udp(podA, uint16(20000+i), "8.8.8.8", uint16(53+i%5)) })
	fs = append(fs, udp(podA, 1, "1.1.1.1", 53))
	s := aggregate(nil, fs...).Summary(10)
	if s.Demand["udp"] != 200 || len(s.Destinations) != 2 || s.Destinations[0].Port != 0 {
		t.Fatalf("demand %v, destinations %+v; want udp 200 towards 8.8.8.8 (port 0)", s.Demand, s.Destinations)
	}
}

func TestPrivateDestinationsSpendNoPorts(t *testing.T) {
	private := []string{"10.0.0.1", "172.16.5.5", "172.31.255.1", "192.168.1.1", "100.64.0.10", "100.127.0.1",
		"169.254.169.254", "127.0.0.1", "224.0.0.251", "fd00::1", "fe80::1", "::1", "ff02::1", "203.0.113.5"}
	var fs []conntrack.Flow
	for i, ip := range private {
		fs = append(fs, tcp(podA, uint16(i), ip, 443))
	}
	public := []string{"172.32.0.1", "100.128.0.1", "20.50.2.1", "2001:db8::1"}
	for i, ip := range public {
		fs = append(fs, tcp(podA, uint16(100+i), ip, 443))
	}
	icmp := tcp(podA, 0, "20.50.2.1", 0)
	icmp.Proto = unix.IPPROTO_ICMP
	fs = append(fs, icmp)
	a := aggregate([]netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, fs...)
	if a.Entries != len(fs) || a.Public != len(public) {
		t.Fatalf("entries %d public %d; want %d and %d (private, configured and ICMP destinations left out)",
			a.Entries, a.Public, len(fs), len(public))
	}
}

func TestTopNBound(t *testing.T) {
	fs := flows(5000, func(i int) conntrack.Flow {
		src := netip.AddrFrom4([4]byte{10, 244, byte(i / 250), byte(i % 250)})
		dst := fmt.Sprintf("20.%d.%d.1", i%200, i%7)
		return tcp(src, uint16(i), dst, 443)
	})
	s := aggregate(nil, fs...).Summary(10)
	if len(s.Destinations) != 10 || len(s.Sources) != 10 {
		t.Fatalf("%d destinations, %d sources; want 10 each", len(s.Destinations), len(s.Sources))
	}
	for i := 1; i < 10; i++ {
		if s.Destinations[i].Flows > s.Destinations[i-1].Flows {
			t.Errorf("destinations not sorted by flows: %+v", s.Destinations)
		}
	}
	for _, src := range s.Sources {
		if src.TopDestination == nil || src.TopDestination.Flows != 1 {
			t.Errorf("source %v: top destination %+v, want one with 1 flow", src.IP, src.TopDestination)
		}
	}
}

func TestMapsStayBounded(t *testing.T) {
	a := NewAggregator(nil)
	extra := 5
	for i := range MaxDestinations + extra {
		f := tcp(podA, 1, "20.0.0.1", 1)
		f.Orig.Dst = netip.AddrFrom4([4]byte{20, byte(i >> 16), byte(i >> 8), byte(i)})
		a.Add(&f)
	}
	if len(a.dests) != MaxDestinations || a.Untracked != extra || a.Public != MaxDestinations+extra {
		t.Fatalf("%d destinations kept, %d untracked; want %d and %d", len(a.dests), a.Untracked, MaxDestinations, extra)
	}
}

func TestBudget(t *testing.T) {
	for _, c := range []struct {
		cfg    Config
		ports  int
		source string
	}{
		{Config{}, 1024, SourceDefault},
		{Config{BackendPoolSize: 1}, 1024, SourceTable},
		{Config{BackendPoolSize: 50}, 1024, SourceTable},
		{Config{BackendPoolSize: 51}, 512, SourceTable},
		{Config{BackendPoolSize: 100}, 512, SourceTable},
		{Config{BackendPoolSize: 101}, 256, SourceTable},
		{Config{BackendPoolSize: 400}, 128, SourceTable},
		{Config{BackendPoolSize: 800}, 64, SourceTable},
		{Config{BackendPoolSize: 801}, 32, SourceTable},
		{Config{BackendPoolSize: 1000}, 32, SourceTable},
		{Config{BackendPoolSize: 1000, AllocatedPorts: 50000}, 50000, SourceConfig},
	} {
		if p, s := c.cfg.Budget(); p != c.ports || s != c.source {
			t.Errorf("%+v: budget %d (%s), want %d (%s)", c.cfg, p, s, c.ports, c.source)
		}
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal("defaults:", err)
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.Enabled = "yes" },
		func(c *Config) { c.WarnRatio = 0 },
		func(c *Config) { c.WarnRatio = 1.5 },
		func(c *Config) { c.BackendPoolSize = 1001 },
		func(c *Config) { c.AllocatedPorts = -8 },
		func(c *Config) { c.Interval = 0 },
		func(c *Config) { c.PrivateCIDRs = []netip.Prefix{{}} },
	} {
		c := DefaultConfig()
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestJudgeAllocationTableEdges(t *testing.T) {
	// 600 concurrent flows to one endpoint: fine in a pool of 50 VMs
	// (1 024 ports), a problem once the pool grows to 51 (512 ports).
	fs := flows(600, func(i int) conntrack.Flow { return tcp(podA, uint16(i), "20.50.2.1", 443) })
	sum := aggregate(nil, fs...).Summary(10)
	owners := map[netip.Addr]Owner{podA: {Kind: KindPod, Namespace: "shop", Pod: "checkout-7d9f", PID: 4242, NetNS: 4026532000}}
	cfg := DefaultConfig()
	cfg.BackendPoolSize = 50
	r := Judge(cfg, sum, owners)
	if r.Status != check.OK || r.AllocatedPorts != 1024 || r.AllocatedSource != SourceTable || r.DemandPorts != 600 {
		t.Fatalf("pool 50: %+v", r)
	}
	cfg.BackendPoolSize = 51
	r = Judge(cfg, sum, owners)
	if r.Status != check.Problem || r.AllocatedPorts != 512 || r.Utilization < 1.17 || r.Utilization > 1.18 {
		t.Fatalf("pool 51: %+v", r)
	}
	want := "SNAT 600/512 ports (117%) to 20.50.2.1:443/tcp; top shop/checkout-7d9f"
	if r.Message != want {
		t.Errorf("message %q, want %q", r.Message, want)
	}
	if s := r.Sources[0]; s.Kind != KindPod || s.PID != 4242 || s.NetNS != 4026532000 || s.Flows != 600 ||
		s.TopDestination == nil || s.TopDestination.Flows != 600 {
		t.Errorf("source %+v", s)
	}
	// 1 000 VMs: 32 ports; 26 flows is 81 %, over the default 0.8.
	cfg.BackendPoolSize = 1000
	r = Judge(cfg, aggregate(nil, fs[:26]...).Summary(10), nil)
	if r.Status != check.Problem || r.AllocatedPorts != 32 || r.Sources[0].Kind != KindUnknown {
		t.Errorf("pool 1000: %+v", r)
	}
	r = Judge(cfg, aggregate(nil, fs[:25]...).Summary(10), nil)
	if r.Status != check.OK {
		t.Errorf("25/32 = 78 %% judged %s", r.Status)
	}
}

func TestMessageFitsWithLongNames(t *testing.T) {
	v6 := "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"
	sum := aggregate(nil, tcp(podA, 1, v6, 44300)).Summary(10)
	owners := map[netip.Addr]Owner{podA: {Kind: KindPod, Namespace: strings.Repeat("n", 63), Pod: strings.Repeat("p", 200)}}
	r := Judge(DefaultConfig(), sum, owners)
	if len(r.Message) > check.MaxMessage || !strings.Contains(r.Message, v6) {
		t.Errorf("message %q (%d bytes): must fit 80 bytes and name the destination", r.Message, len(r.Message))
	}
	if r := Judge(DefaultConfig(), Summary{Demand: map[string]int{}}, nil); r.Message != "SNAT 0/1024 ports (0%): no public flows" {
		t.Errorf("empty table: %q", r.Message)
	}
}

// fakeDump replays flows, failing with errs first (one per call).
type fakeDump struct {
	flows []conntrack.Flow
	errs  []error
	calls int
}

func (d *fakeDump) dump(_ context.Context, _ conntrack.Filter, fn func(*conntrack.Flow)) (conntrack.Stats, error) {
	d.calls++
	if len(d.errs) > 0 {
		err := d.errs[0]
		d.errs = d.errs[1:]
		// A failed dump may have delivered entries: they must not count.
		for i := range d.flows {
			fn(&d.flows[i])
		}
		return conntrack.Stats{}, err
	}
	for i := range d.flows {
		fn(&d.flows[i])
	}
	return conntrack.Stats{Entries: len(d.flows)}, nil
}

func TestScannerRetriesInterruptedDump(t *testing.T) {
	intr := &conntrack.Error{Kind: conntrack.Interrupted, Err: nl.ErrDumpInterrupted}
	d := &fakeDump{flows: flows(10, func(i int) conntrack.Flow { return tcp(podA, uint16(i), "20.50.2.1", 443) }),
		errs: []error{intr, intr}}
	r := Scanner{Dump: d.dump}.Run(context.Background(), DefaultConfig())
	if r.Status != check.OK || r.PublicFlows != 10 || d.calls != 3 {
		t.Fatalf("after two interrupted dumps: %+v (%d calls); want ok with 10 flows on the third", r, d.calls)
	}
	d = &fakeDump{errs: []error{intr, intr, intr}}
	if r := (Scanner{Dump: d.dump}).Run(context.Background(), DefaultConfig()); r.Status != check.Unknown ||
		!strings.Contains(r.Message, "changed during the dump") {
		t.Errorf("always interrupted: %+v, want unknown saying why", r.Verdict)
	}
}

func TestScannerUnknownWhenTableUnreadable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&conntrack.Error{Kind: conntrack.Permission, Err: unix.EPERM}, "no permission"},
		{&conntrack.Error{Kind: conntrack.Unavailable, Err: unix.EPROTONOSUPPORT}, "not available"},
	} {
		d := &fakeDump{errs: []error{c.err}}
		r := Scanner{Dump: d.dump}.Run(context.Background(), DefaultConfig())
		if r.Status != check.Unknown || !strings.Contains(r.Message, c.want) || len(r.Message) > check.MaxMessage ||
			r.Destinations == nil || r.Sources == nil || d.calls != 1 {
			t.Errorf("%v: %+v", c.err, r)
		}
	}
}

// procTree is a fixture proc root: processes with a network namespace,
// addresses and a cgroup file.
type procTree struct {
	t    *testing.T
	proc string
	root string
}

func newProcTree(t *testing.T) *procTree {
	dir := t.TempDir()
	pt := &procTree{t: t, proc: filepath.Join(dir, "proc"), root: filepath.Join(dir, "root")}
	pt.write("stat", "cpu  1 0 1 1 0 0 0 0 0 0\n")
	return pt
}

func (p *procTree) write(rel, content string) {
	p.t.Helper()
	path := filepath.Join(p.proc, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// process adds pid (or "self") in netns ino with IPv4 addresses and a cgroup file.
func (p *procTree) process(pid string, ino uint64, cgroup string, addrs ...string) {
	p.t.Helper()
	var trie strings.Builder
	trie.WriteString("Local:\n  +-- 0.0.0.0/0 3 0 5\n")
	for _, a := range addrs {
		fmt.Fprintf(&trie, "     |-- %s\n        /32 host LOCAL\n", a)
	}
	trie.WriteString("     |-- 127.0.0.1\n        /32 host LOCAL\n")
	p.write(filepath.Join(pid, "net", "fib_trie"), trie.String())
	p.write(filepath.Join(pid, "cgroup"), cgroup)
	if err := os.MkdirAll(filepath.Join(p.proc, pid, "ns"), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Symlink(fmt.Sprintf("net:[%d]", ino), filepath.Join(p.proc, pid, "ns", "net")); err != nil {
		p.t.Fatal(err)
	}
}

// processWithoutNS adds pid like process, but its ns/net link cannot be
// read (the daemon lacks CAP_SYS_PTRACE for another user's process): only
// /proc/<pid>/net tells its namespace.
func (p *procTree) processWithoutNS(pid, cgroup string, addrs ...string) {
	p.t.Helper()
	p.process(pid, 1, cgroup, addrs...)
	if err := os.Remove(filepath.Join(p.proc, pid, "ns", "net")); err != nil {
		p.t.Fatal(err)
	}
	p.write(filepath.Join(pid, "net", "dev"), "Inter-|   Receive\n")
}

// Without ptrace access to a pod's processes, the pod is still named from
// /proc/<pid>/net and its cgroup; its namespace inode is unknown (0).
func TestResolverWithoutPtraceAccess(t *testing.T) {
	pt := newProcTree(t)
	pt.process("self", hostNS, "0::/system.slice/nodekeeper.service\n", node.String())
	pt.processWithoutNS("700", "0::/kubepods.slice/kubepods-pod"+strings.ReplaceAll(uidA, "-", "_")+".slice/cri-containerd-01.scope\n", podA.String())
	pt.podLogDir("shop_checkout-7d9f_" + uidA)
	r := NewResolver(pt.fs(), time.Now)
	got, err := r.Resolve(context.Background(), []netip.Addr{podA})
	if err != nil {
		t.Fatal(err)
	}
	if want := (Owner{Kind: KindPod, Namespace: "shop", Pod: "checkout-7d9f", PID: 700}); got[podA] != want {
		t.Errorf("owner %+v, want %+v", got[podA], want)
	}
}

func (p *procTree) podLogDir(name string) {
	if err := os.MkdirAll(filepath.Join(p.root, "var", "log", "pods", name), 0o755); err != nil {
		p.t.Fatal(err)
	}
}

func (p *procTree) fs() *hostfs.FS {
	h, err := hostfs.New(hostfs.Paths{Proc: p.proc, Root: p.root, Sys: p.root, Cgroup: p.root})
	if err != nil {
		p.t.Fatal(err)
	}
	return h
}

const (
	hostNS = 4026531840
	uidA   = "3f1c2a9e-8b7d-4e21-9a55-0c1d2e3f4a5b"
	uidB   = "7a0b1c2d-3e4f-5a6b-7c8d-9e0f1a2b3c4d"
)

func TestResolverHostPodUnknown(t *testing.T) {
	pt := newProcTree(t)
	pt.process("self", hostNS, "0::/system.slice/nodekeeper.service\n", node.String())
	pt.process("1", hostNS, "0::/init.scope\n", node.String())
	pt.process("700", 4026532100, "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+
		strings.ReplaceAll(uidA, "-", "_")+".slice/cri-containerd-01.scope\n", podA.String())
	pt.process("701", 4026532100, "0::/kubepods.slice/x\n", podA.String()) // same namespace: one walk
	pt.process("900", 4026532200, "12:pids:/kubepods/besteffort/pod"+uidB+"/c0\n0::/\n", podB.String())
	pt.process("950", 4026532300, "0::/user.slice\n", "10.244.3.3") // a namespace outside any pod
	pt.podLogDir("shop_checkout-7d9f_" + uidA)
	pt.podLogDir("not-a-pod-dir")

	now := time.Unix(1000, 0)
	r := NewResolver(pt.fs(), func() time.Time { return now })
	stray := netip.MustParseAddr("10.244.9.9")
	got, err := r.Resolve(context.Background(), []netip.Addr{node, podA, podB, netip.MustParseAddr("10.244.3.3"), stray})
	if err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]Owner{
		node:                              {Kind: KindHost, NetNS: hostNS},
		podA:                              {Kind: KindPod, Namespace: "shop", Pod: "checkout-7d9f", PID: 700, NetNS: 4026532100},
		podB:                              {Kind: KindPod, Pod: uidB, PID: 900, NetNS: 4026532200}, // no log directory
		netip.MustParseAddr("10.244.3.3"): {Kind: KindUnknown, PID: 950, NetNS: 4026532300},
		stray:                             {Kind: KindUnknown},
	}
	for ip, w := range want {
		if got[ip] != w {
			t.Errorf("%v: %+v, want %+v", ip, got[ip], w)
		}
	}

	// A new pod appears: it stays unknown until MinRefresh has passed,
	// then the walk finds it.
	pt.process("1200", 4026532400, "12:pids:/kubepods/pod"+uidB+"/c\n", stray.String())
	now = now.Add(time.Second)
	if got, _ := r.Resolve(context.Background(), []netip.Addr{stray}); got[stray].Kind != KindUnknown {
		t.Errorf("walked again within MinRefresh: %+v", got[stray])
	}
	now = now.Add(DefaultMinRefresh)
	if got, _ := r.Resolve(context.Background(), []netip.Addr{stray}); got[stray].PID != 1200 {
		t.Errorf("after MinRefresh: %+v, want pid 1200", got[stray])
	}
}

func TestResolverVanishedPodIsUnknown(t *testing.T) {
	pt := newProcTree(t)
	pt.process("self", hostNS, "0::/\n", node.String())
	pt.process("700", 4026532100, "12:pids:/kubepods/pod"+uidA+"/c\n", podA.String())
	now := time.Unix(1000, 0)
	r := NewResolver(pt.fs(), func() time.Time { return now })
	if got, _ := r.Resolve(context.Background(), []netip.Addr{podA}); got[podA].Kind != KindPod {
		t.Fatalf("%+v", got[podA])
	}
	if err := os.RemoveAll(filepath.Join(pt.proc, "700")); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	stray := netip.MustParseAddr("10.244.9.9") // an unknown address makes it walk again
	got, err := r.Resolve(context.Background(), []netip.Addr{podA, stray})
	if err != nil || got[podA].Kind != KindUnknown {
		t.Errorf("vanished pod: %+v, %v; want unknown, no error", got[podA], err)
	}
}

func TestParsers(t *testing.T) {
	b, _ := os.ReadFile("testdata/fib_trie.host")
	if got := ParseFibTrieLocal(b); len(got) != 1 || got[0].String() != "192.0.2.2" {
		t.Errorf("fib_trie: %v, want [192.0.2.2]", got)
	}
	b, _ = os.ReadFile("testdata/if_inet6.host")
	if got := ParseIfInet6(b); len(got) != 1 || got[0].String() != "fd00::2" {
		t.Errorf("if_inet6: %v, want [fd00::2]", got)
	}
	for file, want := range map[string]string{"cgroup.v1": uidA, "cgroup.v2": uidB} {
		b, _ := os.ReadFile("testdata/" + file)
		if got := PodUID(b); got != want {
			t.Errorf("%s: pod UID %q, want %q", file, got, want)
		}
	}
	if got := PodUID([]byte("0::/user.slice/pod" + uidA + "\n")); got != "" {
		t.Errorf("a cgroup outside kubepods named a pod: %q", got)
	}
	if ns, pod, uid, ok := ParsePodLogDir("kube-system_coredns-5d78c9869d-abcde_" + uidA); !ok ||
		ns != "kube-system" || pod != "coredns-5d78c9869d-abcde" || uid != uidA {
		t.Errorf("log dir: %q %q %q %v", ns, pod, uid, ok)
	}
	for _, bad := range []string{"a_b", "a_b_c_" + uidA, "_b_" + uidA, "a_b_" + strings.ToUpper(uidA)} {
		if _, _, _, ok := ParsePodLogDir(bad); ok {
			t.Errorf("log dir %q accepted", bad)
		}
	}
}

func FuzzPodUID(f *testing.F) {
	for _, file := range []string{"cgroup.v1", "cgroup.v2"} {
		b, _ := os.ReadFile("testdata/" + file)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if uid := PodUID(b); uid != "" && !isUID(uid) {
			t.Fatalf("PodUID returned %q", uid)
		}
	})
}

func FuzzParseFibTrieLocal(f *testing.F) {
	b, _ := os.ReadFile("testdata/fib_trie.host")
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, a := range ParseFibTrieLocal(b) {
			if !a.Is4() || a.IsLoopback() {
				t.Fatalf("local address %v", a)
			}
		}
	})
}

func FuzzParseIfInet6(f *testing.F) {
	b, _ := os.ReadFile("testdata/if_inet6.host")
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, a := range ParseIfInet6(b) {
			if !a.Is6() || a.IsLoopback() || a.IsLinkLocalUnicast() {
				t.Fatalf("address %v", a)
			}
		}
	})
}

func FuzzParsePodLogDir(f *testing.F) {
	f.Add("kube-system_coredns_" + uidA)
	f.Fuzz(func(t *testing.T, s string) {
		ns, pod, uid, ok := ParsePodLogDir(s)
		if ok && (ns+"_"+pod+"_"+uid != s || !isUID(uid)) {
			t.Fatalf("%q → %q %q %q", s, ns, pod, uid)
		}
	})
}
