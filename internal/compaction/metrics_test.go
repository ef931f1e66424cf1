package compaction

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nodekeeper/nodekeeper/internal/policy"
)

// The compaction series as the contract spells them; registering twice on
// one registry (a daemon restarted in the same process) reuses the first.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := NewMetrics(reg)
	if err != nil {
		t.Fatalf("second registration: %v", err)
	}
	m.Observe(0, ReasonFragmentation, policy.Success, 150*time.Millisecond)
	again.Observe(1, ReasonSafety, policy.Failure, 3*time.Second)
	// Outside the vocabulary: not recorded.
	m.Observe(0, "manual", policy.Success, time.Second)
	m.Observe(0, ReasonSafety, policy.SkippedDryRun, time.Second)
	m.Observe(-1, ReasonSafety, policy.Success, time.Second)
	want := `
# HELP nodekeeper_compactions_total Memory compactions nodekeeper ran, by NUMA node, reason and result.
# TYPE nodekeeper_compactions_total counter
nodekeeper_compactions_total{node="0",reason="fragmentation",result="success"} 1
nodekeeper_compactions_total{node="1",reason="safety",result="failure"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "nodekeeper_compactions_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("compaction_duration_seconds has %d series, want 2", n)
	}
}
