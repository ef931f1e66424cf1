package snat_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/testenv/nkbin"

	"github.com/vishvananda/netns"

	"github.com/nodekeeper/nodekeeper/internal/snat"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

// lab is the outbound lab: network namespaces the test creates — a "node"
// that masquerades one pod range towards an "internet" namespace owning
// public-looking addresses, a second pod range it routes without NAT (Azure
// CNI style), a private destination, and the node's own flows.
type lab struct {
	t      *testing.T
	id     string
	ns     map[string]string // role → namespace name
	mu     sync.Mutex
	closer []io.Closer
}

func (l *lab) keep(c io.Closer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closer = append(l.closer, c)
}

const (
	nodeIP   = "10.224.0.4"
	inetIP   = "10.224.0.1"
	pod1IP   = "10.244.1.2" // masqueraded
	pod2IP   = "10.244.2.2" // routed as is
	private  = "10.0.0.10"  // in the VNet: spends no SNAT port
	uidPod1  = "5b7c1d2e-3f40-4a5b-8c6d-7e8f90a1b2c3"
	uidPod2  = "6c8d2e3f-4051-4b6c-9d7e-8f90a1b2c3d4"
	pod1Name = "checkout-7d9f8b6c5d-x2x9q"
)

var publicAddrs = []string{"20.50.2.1", "20.50.2.2", "52.1.1.1", "8.8.8.8"}

func (l *lab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) in(role string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "netns", "exec", l.ns[role]}, args...)...)
}

func newLab(t *testing.T) *lab {
	layer.Root(t)
	for _, tool := range []string{"ip", "nft", "conntrack"} {
		if _, err := exec.LookPath(tool); err != nil {
			layer.Unavailable(t, "root", "%s not installed (scripts/test-deps.sh installs it)", tool)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	l := &lab{t: t, id: hex.EncodeToString(b), ns: map[string]string{}}
	for _, role := range []string{"node", "pod1", "pod2", "inet"} {
		name := "nkt-" + l.id + "-" + role
		l.run("ip", "netns", "add", name)
		l.ns[role] = name
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	}
	t.Cleanup(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, c := range l.closer {
			c.Close()
		}
	})
	veth := func(a, b, aIf, bIf string) {
		l.run("ip", "link", "add", aIf, "netns", l.ns[a], "type", "veth", "peer", "name", bIf, "netns", l.ns[b])
	}
	up := func(role, ifname, cidr string) {
		l.in(role, "ip", "addr", "add", cidr, "dev", ifname)
		l.in(role, "ip", "link", "set", ifname, "up")
	}
	veth("node", "pod1", "nk"+l.id+"p1", "eth0")
	veth("node", "pod2", "nk"+l.id+"p2", "eth0")
	veth("node", "inet", "nk"+l.id+"up", "eth0")
	up("node", "nk"+l.id+"p1", "10.244.1.1/24")
	up("node", "nk"+l.id+"p2", "10.244.2.1/24")
	up("node", "nk"+l.id+"up", nodeIP+"/24")
	up("pod1", "eth0", pod1IP+"/24")
	up("pod2", "eth0", pod2IP+"/24")
	up("inet", "eth0", inetIP+"/24")
	for _, role := range []string{"node", "pod1", "pod2", "inet"} {
		l.in(role, "ip", "link", "set", "lo", "up")
	}
	for _, a := range append([]string{private}, publicAddrs...) {
		l.in("inet", "ip", "addr", "add", a+"/32", "dev", "lo")
	}
	l.in("pod1", "ip", "route", "add", "default", "via", "10.244.1.1")
	l.in("pod2", "ip", "route", "add", "default", "via", "10.244.2.1")
	l.in("node", "ip", "route", "add", "default", "via", inetIP)
	l.in("inet", "ip", "route", "add", "10.244.2.0/24", "via", nodeIP)
	l.in("node", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	l.in("node", "nft", fmt.Sprintf(`add table ip nat
add chain ip nat post { type nat hook postrouting priority 100; }
add rule ip nat post ip saddr 10.244.1.0/24 oifname "nk%sup" masquerade`, l.id))
	return l
}

// inNS runs fn on a locked thread inside role's namespace: sockets fn
// opens belong to that namespace for good.
func (l *lab) inNS(role string, fn func()) {
	l.t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			l.t.Error(err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(l.ns[role])
		if err != nil {
			l.t.Error(err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			l.t.Error(err)
			return
		}
		fn()
		if err := netns.Set(orig); err != nil {
			l.t.Error("back to the test's namespace:", err) // the thread stays locked and ends with the goroutine
			return
		}
		runtime.UnlockOSThread()
	}()
	<-done
}

// serve listens on the internet's addresses: TCP accepts and holds, UDP echoes.
func (l *lab) serve() {
	l.inNS("inet", func() {
		for _, a := range append([]string{private}, publicAddrs...) {
			for _, port := range []string{"80", "443"} {
				ln, err := net.Listen("tcp", net.JoinHostPort(a, port))
				if err != nil {
					l.t.Error(err)
					return
				}
				l.keep(ln)
				go func() {
					for {
						c, err := ln.Accept()
						if err != nil {
							return
						}
						l.keep(c)
					}
				}()
			}
			for _, port := range []string{"53", "5353"} {
				pc, err := net.ListenPacket("udp", net.JoinHostPort(a, port))
				if err != nil {
					l.t.Error(err)
					return
				}
				l.keep(pc)
				go func() {
					buf := make([]byte, 512)
					for {
						n, from, err := pc.ReadFrom(buf)
						if err != nil {
							return
						}
						pc.WriteTo(buf[:n], from)
					}
				}()
			}
		}
	})
}

// connect opens n TCP connections (or UDP exchanges) from role to addr.
func (l *lab) connect(role, proto, addr string, n int) {
	l.t.Helper()
	l.inNS(role, func() {
		for range n {
			c, err := net.DialTimeout(proto, addr, 5*time.Second)
			if err != nil {
				l.t.Errorf("%s %s → %s: %v", role, proto, addr, err)
				return
			}
			l.keep(c)
			if proto == "udp" {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 8)
				if _, err := c.Write([]byte("q")); err != nil {
					l.t.Error(err)
				} else if _, err := c.Read(buf); err != nil {
					l.t.Errorf("udp %s → %s: no answer: %v", role, addr, err)
				}
			}
		}
	})
}

// podProcess starts a pod's stand-in (sleep) in role's namespace, in a
// kubepods-style cgroup under a directory the test owns in a v1 hierarchy
// of this host (removed afterwards; nothing else of the hierarchy moves).
func (l *lab) podProcess(role, uid string) int {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns[role], "sleep", "600")
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	pid := cmd.Process.Pid
	hier := ""
	for _, h := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err == nil {
			hier = h
			break
		}
	}
	if hier == "" {
		l.t.Fatal("no cgroup hierarchy to place the pod process in")
	}
	top := filepath.Join(hier, "nodekeeper-test-"+l.id+"-"+role)
	dir := filepath.Join(top, "kubepods", "besteffort", "pod"+uid)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	orig, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		// The process has ended by now (cleanups run last-in first-out);
		// remove the test's directories bottom-up.
		for d := dir; strings.HasPrefix(d, top); d = filepath.Dir(d) {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				l.t.Errorf("remove test cgroup %s: %v", d, err)
			}
		}
	})
	l.t.Cleanup(func() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	// Wait until ip has exec'd sleep inside the namespace (same PID), so the
	// process moved is the one that stays.
	for range 200 {
		if b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm")); strings.TrimSpace(string(b)) == "sleep" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		l.t.Fatalf("move pid %d into %s: %v (was in %s)", pid, dir, err, orig)
	}
	return pid
}

// conntrackL counts the node's table as conntrack -L lists it: all entries,
// and those whose original destination is public.
func (l *lab) conntrackL() (entries, public int) {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", l.ns["node"], "conntrack", "-L").Output()
	if err != nil {
		l.t.Fatalf("conntrack -L: %v", err)
	}
	agg := snat.NewAggregator(nil)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		entries++
		proto := strings.Fields(sc.Text())[0]
		for _, f := range strings.Fields(sc.Text()) {
			if v, ok := strings.CutPrefix(f, "dst="); ok {
				if (proto == "tcp" || proto == "udp") && !agg.Private(netip.MustParseAddr(v)) {
					public++
				}
				break
			}
		}
	}
	return entries, public
}

func TestLabCheckAndTopAgreeWithConntrack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and sets up network namespaces")
	}
	l := newLab(t)
	bin := nkbin.Build(t)
	l.serve()
	pid1 := l.podProcess("pod1", uidPod1)
	pid2 := l.podProcess("pod2", uidPod2)
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "var", "log", "pods", "shop_"+pod1Name+"_"+uidPod1, "app"), 0o755); err != nil {
		t.Fatal(err)
	}

	l.connect("pod1", "tcp", "20.50.2.1:443", 30)
	l.connect("pod1", "tcp", "20.50.2.1:80", 10)
	l.connect("pod1", "tcp", "52.1.1.1:443", 5)
	l.connect("pod1", "udp", "8.8.8.8:53", 6)
	l.connect("pod1", "udp", "8.8.8.8:5353", 2) // same IP: the same UDP group
	l.connect("pod1", "tcp", private+":443", 7)
	l.connect("pod2", "tcp", "20.50.2.2:443", 12)
	l.connect("node", "tcp", "20.50.2.1:443", 4)
	if t.Failed() {
		t.FailNow()
	}

	entries, public := l.conntrackL()
	cmd := exec.Command("ip", "netns", "exec", l.ns["node"], bin, "check", "snat", "--output", "json",
		"--path.rootfs", rootfs, "--config", filepath.Join(rootfs, "none.yaml"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("check snat: %v\n%s", err, out)
	}
	var r snat.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("conntrack -L: %d entries, %d public; check snat: %s", entries, public, out)
	if entries != 76 || public != 69 {
		t.Errorf("conntrack -L shows %d entries, %d public; the lab made 76 and 69", entries, public)
	}
	if r.ConntrackEntries != entries || r.PublicFlows != public {
		t.Errorf("check snat: %d entries, %d public; conntrack -L: %d and %d", r.ConntrackEntries, r.PublicFlows, entries, public)
	}
	// TCP towards 20.50.2.1:443: 30 from pod1 (masqueraded) + 4 of the node.
	if r.DemandPorts != 34 || r.Status != "ok" || r.AllocatedPorts != 1024 {
		t.Errorf("demand %d (%s, %d ports), want 34 of 1024, ok", r.DemandPorts, r.Status, r.AllocatedPorts)
	}
	wantDest := map[string]int{"tcp 20.50.2.1:443": 34, "tcp 20.50.2.2:443": 12, "tcp 20.50.2.1:80": 10,
		"udp 8.8.8.8:0": 8, "tcp 52.1.1.1:443": 5}
	if len(r.Destinations) != len(wantDest) {
		t.Errorf("destinations %+v, want %v", r.Destinations, wantDest)
	}
	for _, d := range r.Destinations {
		if k := fmt.Sprintf("%s %s:%d", d.Proto, d.IP, d.Port); wantDest[k] != d.Flows {
			t.Errorf("destination %s: %d flows, want %d", k, d.Flows, wantDest[k])
		}
	}
	want := map[string]snat.Source{
		pod1IP: {Kind: "pod", Namespace: "shop", Pod: pod1Name, PID: pid1, Flows: 53},
		pod2IP: {Kind: "pod", Pod: uidPod2, PID: pid2, Flows: 12},
		nodeIP: {Kind: "host", Flows: 4},
	}
	if len(r.Sources) != len(want) {
		t.Errorf("sources %+v", r.Sources)
	}
	for _, s := range r.Sources {
		w := want[s.IP.String()]
		if s.Kind != w.Kind || s.Namespace != w.Namespace || s.Pod != w.Pod || s.PID != w.PID || s.Flows != w.Flows || s.NetNS == 0 {
			t.Errorf("source %s: %+v, want %+v", s.IP, s, w)
		}
	}
	if want := "SNAT 34/1024 ports (3%) to 20.50.2.1:443/tcp; top shop/" + pod1Name; r.Message != want {
		t.Errorf("message %q, want %q", r.Message, want)
	}

	// The one-line plugin output and top, as a person runs them in a pipe.
	line, err := exec.Command("ip", "netns", "exec", l.ns["node"], bin, "check", "snat", "--path.rootfs", rootfs,
		"--config", filepath.Join(rootfs, "none.yaml")).Output()
	if err != nil || string(line) != r.Message+"\n" {
		t.Errorf("check snat: %q, %v", line, err)
	}
	top, err := exec.Command("ip", "netns", "exec", l.ns["node"], bin, "top", "snat", "--path.rootfs", rootfs,
		"--config", filepath.Join(rootfs, "none.yaml")).Output()
	t.Logf("top snat:\n%s", top)
	if err != nil || !strings.Contains(string(top), "shop/"+pod1Name) || !strings.Contains(string(top), strconv.Itoa(pid1)) ||
		!strings.Contains(string(top), "host "+nodeIP) {
		t.Errorf("top snat: %v\n%s", err, top)
	}
}
