package metrics

import (
	"bytes"
	"flag"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/irqbalance"
	"github.com/nodekeeper/nodekeeper/internal/policy"
	"github.com/nodekeeper/nodekeeper/internal/testenv/promtext"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/nodekeeper/nodekeeper/internal/check"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// contractNames are the metric names of the contract that package metrics
// owns: everything the golden file pins. (The compaction series are package
// compaction's.)
var contractNames = []string{
	"nodekeeper_check_status",
	"nodekeeper_check_duration_seconds",
	"nodekeeper_nic_irq_cpu",
	"nodekeeper_vmbus_channel_cpu",
	"nodekeeper_scheduled_events_total",
	"nodekeeper_imds_up",
	"nodekeeper_vm_pauses_total",
	"nodekeeper_pause_to_verified_seconds",
	"nodekeeper_remediations_total",
	"nodekeeper_irqbalance_known_buggy",
	"nodekeeper_kubelet_allowed_cpus",
	"nodekeeper_kubelet_netrx_overlap_cpus",
	"nodekeeper_softirq_saturated_cpus",
	"nodekeeper_memory_unusable_index",
	"nodekeeper_build_info",
}

// Check names the daemon declares (the packages that own them are above
// metrics in the import graph).
const (
	checkIRQ     check.Name = "irq"
	checkKubelet check.Name = "kubelet"
)

// representative makes the calls a daemon makes over a Freeze and a repair.
func representative(m *Metrics) {
	m.SetBuildInfo("1.2.3")
	m.EnableIMDS()
	m.SetIMDSUp(true)
	m.DeclareCheck(checkIRQ)
	m.DeclareCheck(checkKubelet)
	m.SetCheckStatus(checkIRQ, check.Problem)
	m.SetCheckStatus(checkIRQ, check.OK)
	m.SetCheckStatus(checkKubelet, check.Unknown)
	m.ObserveCheckDuration(checkIRQ, 3*time.Millisecond)
	m.ObserveCheckDuration(checkIRQ, 40*time.Millisecond)
	m.SetNICIRQs([]NICIRQ{
		{Interface: "eth0", Queue: "comp0", IRQ: 24, CPU: 0},
		{Interface: "eth0", Queue: "comp1", IRQ: 25, CPU: 1},
		{Interface: "eth0", Queue: "comp2", IRQ: 26, CPU: -1},
	})
	m.SetVMBusChannels([]VMBusChannel{
		{Interface: "eth0", Channel: "0", CPU: 0},
		{Interface: "eth0", Channel: "1", CPU: 2},
	})
	m.IncScheduledEvent("Freeze")
	m.IncScheduledEvent("SomethingNew")
	m.IncVMPause(freeze.SourceIMDS)
	m.IncVMPause(freeze.SourceClock)
	m.ObservePauseToVerified(freeze.OutcomeRepaired, 12*time.Second)
	declareDaemonActions(m)
	m.IncRemediation(irqbalance.ActionRestart, policy.Success)
	m.IncRemediation(irqbalance.ActionRestart, policy.SkippedCooldown)
	m.SetIrqbalanceKnownBuggy(true)
	m.SetKubeletAllowedCPUs(2)
	m.SetKubeletNetRxOverlapCPUs(0)
	m.SetSoftirqSaturatedCPUs(1)
	m.SetMemoryUnusableIndexes([]UnusableIndex{
		{Node: 0, Zone: "DMA32", Index: 0.25},
		{Node: 0, Zone: "Normal", Index: 0.875},
	})
}

// kubelet's actions (its package imports the symptom watch, which imports
// this one).
const (
	actionKubeletPin   policy.Action = "kubelet_pin"
	actionKubeletUnpin policy.Action = "kubelet_unpin"
)

// declareDaemonActions declares the repairs as the daemon and the compaction
// watch do: the verified ones with verify_timeout, the others without.
func declareDaemonActions(m *Metrics) {
	for _, a := range []policy.Action{irqbalance.ActionRestart, irqbalance.ActionSighup, irq.ActionSpread, actionKubeletPin} {
		m.DeclareAction(a, policy.Success, policy.Failure, policy.VerifyTimeout)
	}
	m.DeclareAction(actionKubeletUnpin, policy.Success, policy.Failure)
	m.DeclareAction("compaction", policy.Success, policy.Failure)
}

// golden compares the registry's contract metrics with testdata/name.golden
// (GOVERSION stands for runtime.Version()).
func golden(t *testing.T, m *Metrics, name string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		out := strings.ReplaceAll(exposition(t, m), runtime.Version(), "GOVERSION")
		if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	exp := strings.ReplaceAll(string(want), "GOVERSION", runtime.Version())
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(exp), contractNames...); err != nil {
		t.Error(err)
	}
}

// exposition renders the contract metrics in the text format, as /metrics
// serves them (parsed and re-encoded with expfmt, keeping only nodekeeper_*).
func exposition(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	newMux(m, nil, slog.New(slog.DiscardHandler)).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	fams, err := promtext.Parse(rec.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	names := make([]string, 0, len(fams))
	for name := range fams {
		if strings.HasPrefix(name, "nodekeeper_") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	var b strings.Builder
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, name := range names {
		if err := enc.Encode(fams[name]); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// count is the number of series of the metric family name in m's registry.
func count(t *testing.T, m *Metrics, name string) int {
	t.Helper()
	n, err := testutil.GatherAndCount(m.Registry(), name)
	if err != nil {
		t.Fatalf("gather %s: %v", name, err)
	}
	return n
}

func TestGoldenFresh(t *testing.T) {
	m := New()
	declareDaemonActions(m) // what a fresh daemon has declared
	m.SetBuildInfo("1.2.3")
	golden(t, m, "fresh")
	if n := m.InvalidLabelValues(); n != 0 {
		t.Errorf("InvalidLabelValues = %d, want 0", n)
	}
}

func TestGoldenRepresentative(t *testing.T) {
	m := New()
	representative(m)
	golden(t, m, "representative")
	if n := m.InvalidLabelValues(); n != 0 {
		t.Errorf("InvalidLabelValues = %d, want 0", n)
	}
}

func TestEveryContractMetricIsExported(t *testing.T) {
	m := New()
	representative(m)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
	}
	for _, n := range contractNames {
		if !got[n] {
			t.Errorf("%s is not exported", n)
		}
	}
	for _, n := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if !got[n] && (n != "process_cpu_seconds_total" || runtime.GOOS == "linux") {
			t.Errorf("%s (Go/process collector) is not exported", n)
		}
	}
}

func TestCheckStatusOneHot(t *testing.T) {
	m := New()
	m.DeclareCheck("softirq")
	for _, s := range []check.Status{check.OK, check.Problem, check.Unknown, check.OK} {
		m.SetCheckStatus("softirq", s)
		for _, o := range statuses {
			want := 0.0
			if o == s {
				want = 1
			}
			if got := testutil.ToFloat64(m.checkStatus.WithLabelValues("softirq", string(o))); got != want {
				t.Errorf("after %s: status=%s is %v, want %v", s, o, got, want)
			}
		}
	}
}

func TestStaleSeriesDeleted(t *testing.T) {
	m := New()
	m.SetNICIRQs([]NICIRQ{
		{Interface: "eth0", Queue: "comp0", IRQ: 24, CPU: 4},
		{Interface: "eth0", Queue: "comp1", IRQ: 25, CPU: 4},
		{Interface: "eth1", Queue: "comp0", IRQ: 40, CPU: 5},
	})
	m.SetVMBusChannels([]VMBusChannel{{"eth0", "0", 1}, {"eth0", "1", 2}})
	m.SetMemoryUnusableIndexes([]UnusableIndex{{0, "Normal", 0.5}, {1, "Normal", 0.5}})
	if n := count(t, m, "nodekeeper_nic_irq_cpu"); n != 3 {
		t.Fatalf("nic_irq_cpu has %d series, want 3", n)
	}

	// The VF was removed and re-added: new IRQs, eth1 gone.
	m.SetNICIRQs([]NICIRQ{
		{Interface: "eth0", Queue: "comp0", IRQ: 60, CPU: 0},
		{Interface: "eth0", Queue: "comp1", IRQ: 25, CPU: 1},
	})
	m.SetVMBusChannels([]VMBusChannel{{"eth0", "0", 3}})
	m.SetMemoryUnusableIndexes([]UnusableIndex{{0, "Normal", 0.125}})
	exp := `
# HELP nodekeeper_nic_irq_cpu The CPU a NIC queue IRQ is assigned to.
# TYPE nodekeeper_nic_irq_cpu gauge
nodekeeper_nic_irq_cpu{interface="eth0",irq="25",queue="comp1"} 1
nodekeeper_nic_irq_cpu{interface="eth0",irq="60",queue="comp0"} 0
# HELP nodekeeper_vmbus_channel_cpu The CPU an Azure synthetic NIC (VMBus) channel targets.
# TYPE nodekeeper_vmbus_channel_cpu gauge
nodekeeper_vmbus_channel_cpu{channel="0",interface="eth0"} 3
# HELP nodekeeper_memory_unusable_index Unusable free space index at the configured compaction order, by NUMA node and zone: 0 when all free memory is usable, 1 when none is.
# TYPE nodekeeper_memory_unusable_index gauge
nodekeeper_memory_unusable_index{node="0",zone="Normal"} 0.125
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(exp),
		"nodekeeper_nic_irq_cpu", "nodekeeper_vmbus_channel_cpu", "nodekeeper_memory_unusable_index"); err != nil {
		t.Error(err)
	}

	m.SetNICIRQs(nil)
	m.SetVMBusChannels(nil)
	m.SetMemoryUnusableIndexes(nil)
	for _, name := range []string{"nodekeeper_nic_irq_cpu", "nodekeeper_vmbus_channel_cpu", "nodekeeper_memory_unusable_index"} {
		if n := count(t, m, name); n != 0 {
			t.Errorf("%s has %d series after an empty set, want 0", name, n)
		}
	}
}

func TestBuildInfoReplaced(t *testing.T) {
	m := New()
	m.SetBuildInfo("1.0.0")
	m.SetBuildInfo("1.0.1")
	m.SetBuildInfo("")
	exp := `
# HELP nodekeeper_build_info Always 1; the labels say which nodekeeper version runs and the Go version it was built with.
# TYPE nodekeeper_build_info gauge
nodekeeper_build_info{goversion="` + runtime.Version() + `",version="unknown"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(exp), "nodekeeper_build_info"); err != nil {
		t.Error(err)
	}
}

func TestInvalidLabelValuesAreDroppedAndCounted(t *testing.T) {
	m := New()
	m.DeclareCheck(checkIRQ)
	declareDaemonActions(m)
	var logbuf bytes.Buffer
	m.SetLogger(slog.New(slog.NewTextHandler(&logbuf, nil)))
	before, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	calls := []func(){
		func() { m.SetCheckStatus("vf", check.OK) }, // not declared
		func() { m.SetCheckStatus(checkIRQ, "OK") },
		func() { m.ObserveCheckDuration("all", time.Second) },
		func() { m.IncError("scripted") }, // not declared
		func() { m.DeclareCheck("Bad Name") },
		func() { m.IncVMPause("dmesg") },
		func() { m.ObservePauseToVerified("ok", time.Second) },
		func() { m.IncRemediation("irqbalance_stop", policy.Success) }, // not declared
		func() { m.IncRemediation(irq.ActionSpread, "skipped_backoff") },
		func() { m.DeclareAction("Irq Spread") },
	}
	for i, call := range calls {
		call()
		if got := m.InvalidLabelValues(); got != uint64(i+1) {
			t.Errorf("call %d: InvalidLabelValues = %d, want %d", i, got, i+1)
		}
	}
	after, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != len(after) {
		t.Errorf("metric families changed from %d to %d", len(before), len(after))
	}
	for _, n := range []string{"nodekeeper_check_status", "nodekeeper_check_duration_seconds"} {
		if c, err := testutil.GatherAndCount(m.Registry(), n); err != nil || c != 0 {
			t.Errorf("%s has %d series (err %v), want 0", n, c, err)
		}
	}
	if c, _ := testutil.GatherAndCount(m.Registry(), "nodekeeper_remediations_total"); c != 6*2+4 {
		t.Errorf("remediations_total has %d series, want only the %d pre-initialised", c, 6*2+4)
	}
	if !strings.Contains(logbuf.String(), `metric=nodekeeper_remediations_total label=result value=skipped_backoff`) {
		t.Errorf("invalid value not logged:\n%s", logbuf.String())
	}
	// Every valid value of every enumeration is accepted.
	m2 := New()
	for _, c := range []check.Name{checkIRQ, checkKubelet} {
		m2.DeclareCheck(c)
		for _, s := range statuses {
			m2.SetCheckStatus(c, s)
		}
		m2.ObserveCheckDuration(c, time.Millisecond)
	}
	declareDaemonActions(m2)
	for _, a := range []policy.Action{irqbalance.ActionRestart, irqbalance.ActionSighup, irq.ActionSpread, actionKubeletPin, actionKubeletUnpin, "compaction"} {
		for _, r := range policy.Results {
			m2.IncRemediation(a, r)
		}
	}
	for _, o := range freeze.Outcomes {
		m2.ObservePauseToVerified(o, time.Second)
	}
	for _, s := range []freeze.Source{freeze.SourceClock, freeze.SourceIMDS} {
		m2.IncVMPause(s)
	}
	if n := m2.InvalidLabelValues(); n != 0 {
		t.Errorf("valid values counted as invalid: %d", n)
	}
}

func TestIMDSUpOnlyWhenEnabled(t *testing.T) {
	m := New()
	m.SetIMDSUp(true)
	if c, _ := testutil.GatherAndCount(m.Registry(), "nodekeeper_imds_up"); c != 0 {
		t.Errorf("imds_up exported before EnableIMDS")
	}
	m.EnableIMDS()
	m.EnableIMDS() // twice is fine
	if c, _ := testutil.GatherAndCount(m.Registry(), "nodekeeper_imds_up"); c != 1 {
		t.Errorf("imds_up not exported after EnableIMDS")
	}
	m.DisableIMDS()
	m.DisableIMDS()
	if c, _ := testutil.GatherAndCount(m.Registry(), "nodekeeper_imds_up"); c != 0 {
		t.Errorf("imds_up still exported after DisableIMDS")
	}
	m.EnableIMDS()
	if got := testutil.ToFloat64(m.imdsUp); got != 0 {
		t.Errorf("imds_up = %v after re-enabling, want 0 until the next poll", got)
	}
}

func TestScheduledEventTypesBounded(t *testing.T) {
	m := New()
	for _, typ := range []string{"Freeze", "Reboot", "Redeploy", "Preempt", "Terminate", "x1", "x2", "freeze"} {
		m.IncScheduledEvent(typ)
	}
	if c, _ := testutil.GatherAndCount(m.Registry(), "nodekeeper_scheduled_events_total"); c != 6 {
		t.Errorf("scheduled_events_total has %d series, want 6", c)
	}
	if got := testutil.ToFloat64(m.scheduledEvents.WithLabelValues(EventTypeOther)); got != 3 {
		t.Errorf("type=Other = %v, want 3", got)
	}
	if m.InvalidLabelValues() != 0 {
		t.Errorf("an unknown event type is data, not a programming error")
	}
}

func TestLint(t *testing.T) {
	m := New()
	representative(m)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestConcurrentSetters(t *testing.T) {
	m := New()
	m.DeclareCheck(checkIRQ)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				m.SetNICIRQs([]NICIRQ{{Interface: "eth0", Queue: "q", IRQ: j % 3, CPU: i}})
				m.SetCheckStatus(checkIRQ, statuses[j%3])
				m.IncRemediation(irq.ActionSpread, policy.Success)
				m.SetBuildInfo("v")
				if j%10 == 0 {
					m.EnableIMDS()
					m.DisableIMDS()
				}
			}
		}()
	}
	wg.Wait()
	if _, err := m.Registry().Gather(); err != nil {
		t.Fatal(err)
	}
	if n := count(t, m, "nodekeeper_nic_irq_cpu"); n != 1 {
		t.Errorf("nic_irq_cpu has %d series, want 1", n)
	}
}
