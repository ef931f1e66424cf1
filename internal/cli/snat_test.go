package cli

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/snat"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

func TestCheckSNATOnFixtureRootsIsUnknown(t *testing.T) {
	p := hostfixture.Host{CPUs: 2}.MustBuild(t)
	code, out, _ := run(t, append([]string{"check", "snat"}, rootArgs(p)...)...)
	if code != 2 || !strings.Contains(out, "no conntrack table") || strings.Count(out, "\n") != 1 || len(out) > 81 {
		t.Errorf("check snat on fixture roots: exit %d %q; want unknown (2) saying why, one line", code, out)
	}
	code, out, _ = run(t, append([]string{"top", "snat"}, rootArgs(p)...)...)
	if code != 1 || !strings.HasPrefix(out, "unknown: no conntrack table") {
		t.Errorf("top snat on fixture roots: exit %d %q", code, out)
	}
}

// check snat takes the snat.* keys the daemon takes: the budget in its JSON
// comes from the configuration file.
func TestCheckSNATHonoursTheConfig(t *testing.T) {
	p := hostfixture.Host{CPUs: 2}.MustBuild(t)
	cfgFile := filepath.Join(p.Root, "etc", "nodekeeper", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(cfgFile), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte("snat:\n  backendPoolSize: 120\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out, _ := run(t, append([]string{"check", "snat", "--output", "json"}, rootArgs(p)...)...)
	var r struct {
		AllocatedPorts  int    `json:"allocated_ports"`
		AllocatedSource string `json:"allocated_source"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.AllocatedPorts != 256 || r.AllocatedSource != snat.SourceTable {
		t.Errorf("check snat with backendPoolSize 120: %q (%v); want 256 ports from the table", out, err)
	}
}

func TestTopUsage(t *testing.T) {
	for _, args := range [][]string{{"top", "irq"}, {"top", "--by", "cpu"}, {"top", "--limit", "0"}, {"top", "--output", "yaml"}} {
		if code, _, errs := run(t, args...); code != 2 || !strings.Contains(errs, "usage: nodekeeper top") {
			t.Errorf("%v: exit %d %q", args, code, errs)
		}
	}
}

func TestRenderTopFits80Columns(t *testing.T) {
	var flows []conntrack.Flow
	add := func(n int, src, dst string, port uint16, proto uint8) {
		for i := range n {
			flows = append(flows, conntrack.Flow{Proto: proto,
				Orig: conntrack.Tuple{Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), SrcPort: uint16(i), DstPort: port}})
		}
	}
	add(900, "10.244.1.7", "20.50.123.231", 443, 6)
	add(40, "10.224.0.4", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", 8443, 6)
	add(30, "10.244.2.9", "8.8.8.8", 53, 17)
	a := snat.NewAggregator(nil)
	for i := range flows {
		a.Add(&flows[i])
	}
	owners := map[netip.Addr]snat.Owner{
		netip.MustParseAddr("10.244.1.7"): {Kind: snat.KindPod, Namespace: "payments-production", Pod: "checkout-api-7d9f8b6c5d-x2x9q", PID: 41234, NetNS: 4026532801},
		netip.MustParseAddr("10.224.0.4"): {Kind: snat.KindHost, NetNS: 4026531840},
	}
	cfg := snat.DefaultConfig()
	cfg.BackendPoolSize = 60
	r := snat.Judge(cfg, a.Summary(10), owners)
	for _, by := range []string{"pod", "destination"} {
		var b bytes.Buffer
		renderTop(&b, r, by)
		out := b.String()
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if utf8.RuneCountInString(l) > 80 {
				t.Errorf("--by %s: line wider than 80 columns: %q", by, l)
			}
		}
		t.Logf("--by %s:\n%s", by, out)
		want := []string{"problem: SNAT 900/512 ports (176%) to 20.50.123.231:443/tcp", "payments-production/ch", "41234", "host 10.224.0.4", "unknown 10.244.2.9", "8.8.8.8/udp"}
		if by == "destination" {
			want = []string{"20.50.123.231", "8.8.8.8", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff", " 176%"}
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("--by %s: output lacks %q", by, w)
			}
		}
	}
}
