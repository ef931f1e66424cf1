package dnsprobe_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/testenv/nkbin"

	"github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

// The DNS lab: a "node" namespace and a "dns" namespace the test creates,
// joined by a veth pair; in the dns namespace miekg/dns servers answer on
// the kernel's real UDP and TCP paths (conntrack included), and
// `nodekeeper check dns` runs in the node namespace as on a node.
const (
	labNode  = "10.0.0.4"
	labDrops = "10.0.0.10" // drops every second query (the conntrack insert race as a pod sees it)
	labTC    = "10.0.0.11" // answers UDP with TC set, and in full over TCP
)

type dnsLab struct {
	t  *testing.T
	id string
}

func (l *dnsLab) ns(role string) string { return "nkd-" + l.id + "-" + role }

func (l *dnsLab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *dnsLab) in(role string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "netns", "exec", l.ns(role)}, args...)...)
}

func newDNSLab(t *testing.T) *dnsLab {
	layer.Root(t)
	if _, err := exec.LookPath("ip"); err != nil {
		layer.Unavailable(t, "root", "ip not installed (scripts/test-deps.sh installs it)")
	}
	b := make([]byte, 3)
	rand.Read(b)
	l := &dnsLab{t: t, id: hex.EncodeToString(b)}
	for _, role := range []string{"node", "dns"} {
		name := l.ns(role)
		l.run("ip", "netns", "add", name)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	}
	l.run("ip", "link", "add", "eth0", "netns", l.ns("node"), "type", "veth", "peer", "name", "eth0", "netns", l.ns("dns"))
	for role, addrs := range map[string][]string{"node": {labNode}, "dns": {labDrops, labTC}} {
		for _, a := range addrs {
			l.in(role, "ip", "addr", "add", a+"/24", "dev", "eth0")
		}
		l.in(role, "ip", "link", "set", "eth0", "up")
		l.in(role, "ip", "link", "set", "lo", "up")
	}
	return l
}

// inNS runs fn on a locked thread inside role's namespace: sockets fn
// opens belong to that namespace for good.
func (l *dnsLab) inNS(role string, fn func()) {
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
		target, err := netns.GetFromName(l.ns(role))
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

func reply(w dns.ResponseWriter, q *dns.Msg, tc bool) {
	r := new(dns.Msg)
	r.SetReply(q)
	if tc {
		r.Truncated = true
	} else {
		rr, _ := dns.NewRR(q.Question[0].Name + " 5 IN A 10.0.0.1")
		r.Answer = append(r.Answer, rr)
	}
	_ = w.WriteMsg(r)
}

// serve starts a server on addr:53 in the dns namespace, UDP (and TCP when
// tcp is set) with handler h.
func (l *dnsLab) serve(addr string, tcp bool, h dns.HandlerFunc) {
	l.t.Helper()
	var servers []*dns.Server
	l.inNS("dns", func() {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(addr, "53"))
		if err != nil {
			l.t.Error(err)
			return
		}
		servers = append(servers, &dns.Server{PacketConn: pc, Handler: h})
		if tcp {
			ln, err := net.Listen("tcp", net.JoinHostPort(addr, "53"))
			if err != nil {
				l.t.Error(err)
				return
			}
			servers = append(servers, &dns.Server{Listener: ln, Handler: h})
		}
	})
	if l.t.Failed() {
		l.t.FailNow()
	}
	for _, srv := range servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		l.t.Cleanup(func() { _ = srv.Shutdown() })
	}
}

type checkJSON struct {
	Status    string `json:"status"`
	Message   string `json:"message"`
	Server    string `json:"server"`
	Source    string `json:"source"`
	Rcode     string `json:"rcode"`
	Truncated bool   `json:"truncated"`
	Timeouts  int    `json:"timeouts"`
	Attempts  int    `json:"attempts"`
	Result    string `json:"result"`
}

// check runs `nodekeeper check dns --output json` in the node namespace with
// root as its root file system and config as its configuration.
func (l *dnsLab) check(bin, root, config string) (int, checkJSON) {
	l.t.Helper()
	cfg := filepath.Join(root, "etc", "nodekeeper", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.ns("node"), bin, "check", "dns", "--output", "json",
		"--config", cfg, "--path.rootfs", root)
	out, err := cmd.Output()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatal(err)
	}
	var r checkJSON
	if err := json.Unmarshal(out, &r); err != nil {
		l.t.Fatalf("check dns: %v\n%s", err, out)
	}
	return code, r
}

func TestLabCheckDNS(t *testing.T) {
	l := newDNSLab(t)
	var drops, tcpQueries atomic.Int64
	l.serve(labDrops, false, func(w dns.ResponseWriter, q *dns.Msg) {
		if drops.Add(1)%2 == 0 {
			return // every second query is lost
		}
		reply(w, q, false)
	})
	l.serve(labTC, true, func(w dns.ResponseWriter, q *dns.Msg) {
		isTCP := w.LocalAddr().Network() == "tcp"
		if isTCP {
			tcpQueries.Add(1)
		}
		reply(w, q, !isTCP)
	})
	bin := nkbin.Build(t)

	// Through kubelet's clusterDNS, as on a node: the first probe is
	// answered (query 1), the second loses query 2 and gets query 3's answer.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "var", "lib", "kubelet"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "var", "lib", "kubelet", "config.yaml"),
		[]byte("kind: KubeletConfiguration\nclusterDNS:\n- "+labDrops+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const cfg = "dns:\n  timeout: 500ms\n"
	code, r := l.check(bin, root, cfg)
	if code != 0 || r.Status != "ok" || r.Server != labDrops || r.Timeouts != 0 || r.Rcode != "NOERROR" ||
		!strings.HasSuffix(r.Source, "/var/lib/kubelet/config.yaml") {
		t.Errorf("first probe of the lossy server: exit %d %+v; want ok through kubelet's clusterDNS", code, r)
	}
	code, r = l.check(bin, root, cfg)
	if code != 1 || r.Status != "problem" || r.Timeouts != 1 || r.Attempts != 2 || r.Rcode != "NOERROR" ||
		r.Result != "timeout" || !strings.Contains(r.Message, "1 of 2 queries timed out") {
		t.Errorf("second probe of the lossy server: exit %d %+v; want a problem: one timeout, then an answer", code, r)
	}
	if n := drops.Load(); n != 3 {
		t.Errorf("the lossy server saw %d queries, want 3", n)
	}

	// The truncating server through dns.servers: TC over UDP, the answer
	// over TCP, reported truncated.
	code, r = l.check(bin, root, cfg+"  servers: [\""+labTC+"\"]\n")
	if code != 0 || r.Status != "ok" || !r.Truncated || r.Result != "truncated" || r.Attempts != 2 ||
		r.Server != labTC || r.Source != "dns.servers" || !strings.Contains(r.Message, "truncated") {
		t.Errorf("truncating server: exit %d %+v; want ok, truncated, answered over TCP", code, r)
	}
	if n := tcpQueries.Load(); n != 1 {
		t.Errorf("%d TCP queries after TC, want 1", n)
	}
}
