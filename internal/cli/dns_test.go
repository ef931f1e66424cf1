package cli

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// dnsOnLoopback answers every A query with one record, over UDP.
func dnsOnLoopback(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		rr, _ := dns.NewRR(q.Question[0].Name + " 5 IN A 10.0.0.1")
		r.Answer = append(r.Answer, rr)
		_ = w.WriteMsg(r)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

type dnsJSON struct {
	Status    string   `json:"status"`
	Message   string   `json:"message"`
	Server    string   `json:"server"`
	Servers   []string `json:"servers"`
	Source    string   `json:"source"`
	Name      string   `json:"name"`
	Rcode     string   `json:"rcode"`
	AnswerMS  float64  `json:"answer_ms"`
	Truncated bool     `json:"truncated"`
	Timeouts  int      `json:"timeouts"`
	Attempts  int      `json:"attempts"`
}

func TestCheckDNS(t *testing.T) {
	t.Run("no server known", func(t *testing.T) {
		p := hostfixture.Host{CPUs: 2}.MustBuild(t)
		code, out, _ := run(t, append([]string{"check", "dns"}, rootArgs(p)...)...)
		if code != 2 || !strings.Contains(out, "no DNS server known") || strings.Count(out, "\n") != 1 {
			t.Errorf("exit %d %q; want unknown saying no server is known", code, out)
		}
	})
	t.Run("dns.servers", func(t *testing.T) {
		p := hostfixture.Host{CPUs: 2}.MustBuild(t)
		addr := dnsOnLoopback(t)
		writeFile(t, filepath.Join(p.Root, "etc", "nodekeeper", "config.yaml"),
			"dns:\n  probeName: kubernetes.default.svc.cluster.local\n  servers: [\""+addr+"\"]\n")
		code, out, _ := run(t, append([]string{"check", "dns", "--output", "json"}, rootArgs(p)...)...)
		var r dnsJSON
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || r.Status != "ok" || r.Server != addr ||
			r.Source != "dns.servers" || r.Rcode != "NOERROR" || r.Attempts != 1 || r.Timeouts != 0 || r.Truncated ||
			r.AnswerMS <= 0 || r.Name != "kubernetes.default.svc.cluster.local." {
			t.Errorf("exit %d %s (%v)", code, out, err)
		}
	})
	t.Run("kubelet's clusterDNS", func(t *testing.T) {
		p := hostfixture.Host{CPUs: 2}.MustBuild(t)
		// Nothing listens there: the kernel answers port unreachable.
		writeFile(t, filepath.Join(p.Root, "var", "lib", "kubelet", "config.yaml"), "clusterDNS:\n- 127.0.0.211\n")
		code, out, _ := run(t, append([]string{"check", "dns", "--output", "json"}, rootArgs(p)...)...)
		var r dnsJSON
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 || r.Server != "127.0.0.211" ||
			r.Source != filepath.Join(p.Root, "var", "lib", "kubelet", "config.yaml") || !strings.Contains(r.Message, "refused") {
			t.Errorf("exit %d %s (%v); want a problem: nothing listens at kubelet's clusterDNS", code, out, err)
		}
	})
}

// check all probes the DNS only with dns.enabled.
func TestCheckAllLeavesDNSOutUnlessEnabled(t *testing.T) {
	p := hostfixture.Host{CPUs: 2}.MustBuild(t)
	cfg := filepath.Join(p.Root, "etc", "nodekeeper", "config.yaml")
	for _, enabled := range []bool{false, true} {
		text := "dns:\n  enabled: false\n"
		if enabled {
			text = "dns:\n  enabled: true\n"
		}
		writeFile(t, cfg, text)
		_, out, _ := run(t, append([]string{"check", "all", "--output", "json"}, rootArgs(p)...)...)
		if got := strings.Contains(out, `"check": "dns"`); got != enabled {
			t.Errorf("dns.enabled %v: dns in check all = %v\n%s", enabled, got, out)
		}
	}
}
