package docs

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/dnsprobe"
	"github.com/nodekeeper/nodekeeper/internal/snat"

	"github.com/nodekeeper/nodekeeper/internal/compaction"
	"github.com/nodekeeper/nodekeeper/internal/policy"

	"github.com/nodekeeper/nodekeeper/internal/metrics"
)

var update = flag.Bool("update", false, "rewrite the generated parts of README.md")

func TestREADMEConfigReference(t *testing.T) {
	path := filepath.Join("..", "..", "README.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i, j := strings.Index(readme, Begin), strings.Index(readme, End)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the generated configuration reference markers")
	}
	current := readme[i : j+len(End)]
	want := ConfigReference()
	if current == want {
		return
	}
	if *update {
		if err := os.WriteFile(path, []byte(readme[:i]+want+readme[j+len(End):]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's configuration reference is out of date: run go test ./internal/docs -update")
}

// Every exported metric and every MESSAGE_ID is documented in README.md.
func TestREADMEListsMetricsAndMessageIDs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	m := metrics.New()
	m.EnableIMDS()
	m.DeclareCheck("irq")
	m.SetCheckStatus("irq", "ok")
	m.ObserveCheckDuration("irq", time.Millisecond)
	m.SetNICIRQs([]metrics.NICIRQ{{Interface: "eth0", Queue: "q0", IRQ: 24, CPU: 1}})
	m.SetVMBusChannels([]metrics.VMBusChannel{{Interface: "eth0", Channel: "14", CPU: 1}})
	m.SetMemoryUnusableIndexes([]metrics.UnusableIndex{{Node: 0, Zone: "Normal", Index: 0.1}})
	cm, err := compaction.NewMetrics(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	cm.Observe(0, compaction.ReasonSafety, policy.Success, time.Millisecond)
	m.IncScheduledEvent("Freeze")
	sm, err := snat.NewMetrics(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	sm.Observe(&snat.Report{Verdict: check.Verdict{Status: check.OK}, Sources: []snat.Source{{Kind: snat.KindHost, Flows: 1}}}, time.Millisecond)
	if _, err := dnsprobe.NewMetrics(m.Registry()); err != nil {
		t.Fatal(err)
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "nodekeeper_") {
			continue
		}
		n++
		if !strings.Contains(readme, "`"+name+"`") {
			t.Errorf("README.md does not document the metric %s", name)
		}
	}
	if n < 15 {
		t.Errorf("only %d nodekeeper metrics gathered", n)
	}
	src, err := os.ReadFile(filepath.Join("..", "logging", "messageids.go"))
	if err != nil {
		t.Fatal(err)
	}
	ids := regexp.MustCompile(`"([0-9a-f]{32})"`).FindAllStringSubmatch(string(src), -1)
	if len(ids) < 10 {
		t.Fatalf("found %d MESSAGE_IDs", len(ids))
	}
	for _, id := range ids {
		if !strings.Contains(readme, "`"+id[1]+"`") {
			t.Errorf("README.md does not list MESSAGE_ID %s", id[1])
		}
	}
}

// The README's status pictures are the golden files of the status package.
func TestREADMEStatusSamples(t *testing.T) {
	b, _ := os.ReadFile(filepath.Join("..", "..", "README.md"))
	for _, f := range []string{"healthy-08.txt", "skewed-08.txt"} {
		g, err := os.ReadFile(filepath.Join("..", "status", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), strings.TrimRight(string(g), "\n")) {
			t.Errorf("README.md's status sample differs from internal/status/testdata/%s", f)
		}
	}
}
