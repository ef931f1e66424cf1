package compaction

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// copyTree copies testdata/<name> into a fresh temporary root.
func copyTree(t testing.TB, name string) string {
	t.Helper()
	root := t.TempDir()
	src := filepath.Join("testdata", name)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(root, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// fixtureFS is a host root built from the ci-vm capture with buddyinfo
// replaced by testdata/buddyinfo/<buddy> (when not empty), and compaction
// files created as asked.
func fixtureFS(t testing.TB, buddy string, nodeCompact []int, compactMemory bool) (*hostfs.FS, string) {
	t.Helper()
	root := copyTree(t, "ci-vm-2cpu-6.18")
	if buddy != "" {
		writeFile(t, filepath.Join(root, "proc", "buddyinfo"), readTestdata(t, "buddyinfo", buddy))
	}
	if nodeCompact == nil {
		if err := os.RemoveAll(filepath.Join(root, "sys", "devices", "system", "node")); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodeCompact {
		writeFile(t, filepath.Join(root, "sys", "devices", "system", "node", "node"+string(rune('0'+n)), "compact"), nil)
	}
	if compactMemory {
		writeFile(t, filepath.Join(root, "proc", "sys", "vm", "compact_memory"), nil)
	}
	fsys, err := hostfs.New(hostfs.Paths{
		Proc: filepath.Join(root, "proc"), Sys: filepath.Join(root, "sys"),
		Cgroup: filepath.Join(root, "cgroup"), Root: root,
	})
	if err != nil {
		t.Fatal(err)
	}
	return fsys, root
}

func jitterOf(vals ...float64) func() float64 {
	var mu sync.Mutex
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		v := vals[0]
		if len(vals) > 1 {
			vals = vals[1:]
		}
		return v
	}
}

func newTestManager(t testing.TB, fsys *hostfs.FS, cfg Config, opt Options) *Manager {
	t.Helper()
	if opt.Clock == nil {
		opt.Clock = clock.NewFake(t0)
	}
	if opt.Jitter == nil {
		opt.Jitter = jitterOf(0.5)
	}
	m, err := NewManager(fsys, cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	m.write = func(string, []byte) error { return nil }
	return m
}

func mustRead(t testing.TB, m *Manager) []NodeIndex {
	t.Helper()
	ni, err := m.Read()
	if err != nil {
		t.Fatal(err)
	}
	return ni
}

func decisionsString(ds []Decision) string {
	var b strings.Builder
	for i, d := range ds {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(string(rune('0' + d.Node)))
		b.WriteString(":" + string(d.Reason))
		if d.Skip != SkipNone {
			b.WriteString("/" + string(d.Skip))
		}
	}
	return b.String()
}

func TestDecideFragmentation(t *testing.T) {
	fsys, _ := fixtureFS(t, "two-node", []int{0, 1}, true)
	m := newTestManager(t, fsys, DefaultConfig(), Options{})
	nodes := mustRead(t, m) // node 1 is all order < 3 (index 1), node 0 is fine
	steps := []struct {
		at        time.Duration
		saturated bool
		want      string
	}{
		{0, false, "1:fragmentation"},
		{10 * time.Minute, false, "1:fragmentation/cooldown"},
		{30 * time.Minute, false, "1:fragmentation"},
		{60 * time.Minute, true, "1:fragmentation/saturation"},
		{70 * time.Minute, false, "1:fragmentation"}, // a deferred decision holds no reservation
		{90 * time.Minute, false, "1:fragmentation/cooldown"},
		// First safety net: t0 + 3h·(0.5+0.5). Node 1 is due for fragmentation anyway.
		{3 * time.Hour, false, "0:safety 1:fragmentation"},
		{5*time.Hour + 50*time.Minute, false, "1:fragmentation"},
		// Next safety: 3h + 3h·(0.9+0.2·0.5) = 6h; node 1 was compacted 10 min ago.
		{6 * time.Hour, false, "0:safety 1:fragmentation/cooldown"},
	}
	for _, s := range steps {
		got := decisionsString(m.Decide(t0.Add(s.at), nodes, s.saturated))
		if got != s.want {
			t.Errorf("at +%v (saturated %v): %q, want %q", s.at, s.saturated, got, s.want)
		}
	}
	if ns := m.NextSafety(); !ns.Equal(t0.Add(9 * time.Hour)) {
		t.Errorf("next safety %v, want t0+9h", ns.Sub(t0))
	}
}

func TestDecidePeriodicAndOff(t *testing.T) {
	fsys, _ := fixtureFS(t, "two-node", []int{0, 1}, false)
	cfg := DefaultConfig()
	cfg.Mode = ModePeriodic
	// First safety at 3h·(0.5+0) = 1h30; then 3h·(0.9+0.2·1) = 3h18 later.
	m := newTestManager(t, fsys, cfg, Options{Jitter: jitterOf(0, 1)})
	nodes := mustRead(t, m)
	steps := []struct {
		at        time.Duration
		saturated bool
		want      string
	}{
		{0, false, ""},
		{89 * time.Minute, false, ""},
		{90 * time.Minute, true, "0:safety/saturation 1:safety/saturation"},
		{100 * time.Minute, false, "0:safety 1:safety"}, // still due after the deferral
		{110 * time.Minute, false, ""},
		{100*time.Minute + 3*time.Hour + 17*time.Minute, false, ""},
		{100*time.Minute + 3*time.Hour + 18*time.Minute, false, "0:safety 1:safety"},
	}
	for _, s := range steps {
		if got := decisionsString(m.Decide(t0.Add(s.at), nodes, s.saturated)); got != s.want {
			t.Errorf("periodic at +%v: %q, want %q", s.at, got, s.want)
		}
	}

	cfg.Mode = ModeOff
	off := newTestManager(t, fsys, cfg, Options{})
	for h := range 48 {
		if ds := off.Decide(t0.Add(time.Duration(h)*time.Hour), nodes, false); ds != nil {
			t.Fatalf("mode off decided %v", ds)
		}
	}
}

func TestFirstSafetyIsSpread(t *testing.T) {
	fsys, _ := fixtureFS(t, "healthy", []int{0}, false)
	seen := map[time.Time]bool{}
	for _, j := range []float64{0, 0.1, 0.37, 0.5, 0.9, 0.9999} {
		m := newTestManager(t, fsys, DefaultConfig(), Options{Jitter: jitterOf(j)})
		m.Decide(t0, mustRead(t, m), false)
		next := m.NextSafety()
		if d := next.Sub(t0); d < 90*time.Minute || d >= 270*time.Minute {
			t.Errorf("jitter %v: first safety after %v, want within [1h30, 4h30)", j, d)
		}
		seen[next] = true
	}
	if len(seen) != 6 {
		t.Errorf("different jitter gave the same schedule: %v", seen)
	}
}

func TestDecideDryRunLogs(t *testing.T) {
	fsys, _ := fixtureFS(t, "fragmented", []int{0}, false)
	var logs bytes.Buffer
	cfg := DefaultConfig()
	cfg.DryRun = true
	m := newTestManager(t, fsys, cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	wrote := false
	m.write = func(string, []byte) error { wrote = true; return nil }
	nodes := mustRead(t, m)
	ds := m.Decide(t0, nodes, false)
	if got := decisionsString(ds); got != "0:fragmentation/dry_run" {
		t.Fatalf("dry run decided %q", got)
	}
	if _, started := m.Start(context.Background(), ds); started {
		t.Fatal("Start ran a dry-run decision")
	}
	if wrote {
		t.Fatal("dry run wrote")
	}
	if !strings.Contains(logs.String(), "would compact") || !strings.Contains(logs.String(), "node=0") {
		t.Errorf("dry-run log: %q", logs.String())
	}
	if got := decisionsString(m.Decide(t0.Add(time.Minute), nodes, false)); got != "0:fragmentation/cooldown" {
		t.Errorf("dry run is not paced: %q", got)
	}
}

// simulateKernel makes m's write act like the kernel: the counters rise and
// the free lists heal.
func simulateKernel(t *testing.T, m *Manager, root string, block chan struct{}) *[]string {
	var mu sync.Mutex
	var written []string
	vmstat := readTestdata(t, "ci-vm-2cpu-6.18", "proc", "vmstat")
	after := bytes.Replace(vmstat, []byte("compact_migrate_scanned 3956733"), []byte("compact_migrate_scanned 3960000"), 1)
	after = bytes.Replace(after, []byte("compact_isolated 211047"), []byte("compact_isolated 211100"), 1)
	m.write = func(path string, data []byte) error {
		if block != nil {
			<-block
		}
		mu.Lock()
		written = append(written, path+"="+string(data))
		mu.Unlock()
		writeFile(t, filepath.Join(root, "proc", "vmstat"), after)
		writeFile(t, filepath.Join(root, "proc", "buddyinfo"), readTestdata(t, "buddyinfo", "healthy"))
		return nil
	}
	return &written
}

func TestCompactMeasures(t *testing.T) {
	fsys, root := fixtureFS(t, "fragmented", []int{0}, true)
	m := newTestManager(t, fsys, DefaultConfig(), Options{})
	written := simulateKernel(t, m, root, nil)
	r := m.Compact(context.Background(), 0, ReasonFragmentation)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	target := fsys.Sys("devices", "system", "node", "node0", "compact")
	if len(*written) != 1 || (*written)[0] != target+"=1" || r.Target != target {
		t.Errorf("wrote %v, target %q; want %q=1", *written, r.Target, target)
	}
	if !near(r.IndexBefore, 1) || !near(r.IndexAfter, 70.0/112630) {
		t.Errorf("index before %v after %v", r.IndexBefore, r.IndexAfter)
	}
	if r.VMStatDelta["compact_migrate_scanned"] != 3960000-3956733 || r.VMStatDelta["compact_isolated"] != 53 ||
		r.VMStatDelta["compact_free_scanned"] != 0 {
		t.Errorf("vmstat delta %v", r.VMStatDelta)
	}
	if !r.Helped(0.8) || r.Node != 0 || r.Reason != ReasonFragmentation || !r.Start.Equal(t0) {
		t.Errorf("result %+v", r)
	}
	st := m.State()
	if len(st.Nodes) != 0 { // no Decide yet: no indices to report
		t.Errorf("state nodes before any Decide: %+v", st.Nodes)
	}
}

func TestCompactRealWriteOnFile(t *testing.T) {
	fsys, root := fixtureFS(t, "fragmented", []int{0}, false)
	m, err := NewManager(fsys, DefaultConfig(), Options{Clock: clock.NewFake(t0)})
	if err != nil {
		t.Fatal(err)
	}
	r := m.Compact(context.Background(), 0, ReasonSafety)
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	b, _ := os.ReadFile(filepath.Join(root, "sys", "devices", "system", "node", "node0", "compact"))
	if string(b) != "1" {
		t.Errorf("compact file holds %q", b)
	}
}

func TestCompactTargets(t *testing.T) {
	// No node directory: the system-wide file.
	fsys, _ := fixtureFS(t, "fragmented", nil, true)
	if p, ok := CompactPath(fsys, 0); !ok || p != fsys.Proc("sys", "vm", "compact_memory") {
		t.Errorf("CompactPath without node dir = %q, %v", p, ok)
	}
	// Neither: not possible.
	fsys, _ = fixtureFS(t, "fragmented", nil, false)
	if p, ok := CompactPath(fsys, 0); ok {
		t.Errorf("CompactPath without any file = %q", p)
	}
	m := newTestManager(t, fsys, DefaultConfig(), Options{})
	if got := decisionsString(m.Decide(t0, mustRead(t, m), false)); got != "0:fragmentation/unsupported" {
		t.Errorf("decided %q", got)
	}
	if r := m.Compact(context.Background(), 0, ReasonFragmentation); !errors.Is(r.Err, ErrUnsupported) {
		t.Errorf("Compact err = %v", r.Err)
	}
	v, err := CheckOnce(fsys, DefaultConfig())
	if err != nil || v.Status != check.Problem || !strings.Contains(v.Message, "kernel cannot compact") {
		t.Errorf("CheckOnce = %+v, %v", v, err)
	}
	// A write error is reported, the kernel's errno kept.
	fsys, _ = fixtureFS(t, "fragmented", []int{0}, false)
	m = newTestManager(t, fsys, DefaultConfig(), Options{})
	m.write = func(p string, _ []byte) error { return &fs.PathError{Op: "write", Path: p, Err: os.ErrPermission} }
	if r := m.Compact(context.Background(), 0, ReasonFragmentation); !errors.Is(r.Err, os.ErrPermission) || r.Success() {
		t.Errorf("Compact err = %v", r.Err)
	}
}

func TestStartRunsOffTheCallersGoroutine(t *testing.T) {
	fsys, root := fixtureFS(t, "two-node", []int{0, 1}, false)
	clk := clock.NewFake(t0)
	m := newTestManager(t, fsys, DefaultConfig(), Options{Clock: clk})
	release := make(chan struct{})
	written := simulateKernel(t, m, root, release)
	nodes := mustRead(t, m)
	ds := m.Decide(t0, nodes, false)
	ch, started := m.Start(context.Background(), ds)
	if !started {
		t.Fatal("Start did not start")
	}
	if !m.Running() {
		t.Error("not running while the write blocks")
	}
	if ch2, started := m.Start(context.Background(), ds); started {
		t.Error("a second batch started while one runs")
	} else if _, ok := <-ch2; ok {
		t.Error("the channel of a batch that did not start is not closed")
	}
	clk.Advance(time.Hour)
	if got := decisionsString(m.Decide(t0.Add(time.Hour), nodes, false)); got != "1:fragmentation/busy" {
		t.Errorf("decided %q while running", got)
	}
	close(release)
	var results []Result
	for r := range ch {
		results = append(results, r)
	}
	if len(results) != 1 || results[0].Node != 1 || results[0].Err != nil || len(*written) != 1 {
		t.Fatalf("results %+v, written %v", results, *written)
	}
	if m.Running() {
		t.Error("still running after the channel closed")
	}
	st := m.State()
	if len(st.Nodes) != 2 || st.Nodes[1].LastResult == nil || st.Nodes[1].LastResult.Node != 1 {
		t.Errorf("state %+v", st)
	}
}

func TestStartDefersWhenSaturationBegins(t *testing.T) {
	fsys, _ := fixtureFS(t, "two-node", []int{0, 1}, false)
	saturated := false
	m := newTestManager(t, fsys, DefaultConfig(), Options{Saturated: func() bool { return saturated }})
	nodes := mustRead(t, m)
	ds := m.Decide(t0, nodes, false)
	saturated = true
	var rs []Result
	for r := range first(m.Start(context.Background(), ds)) {
		rs = append(rs, r)
	}
	if len(rs) != 1 || !errors.Is(rs[0].Err, ErrDeferred) {
		t.Fatalf("results %+v", rs)
	}
	// The node was not compacted: it is decided again at the next check.
	if got := decisionsString(m.Decide(t0.Add(time.Minute), nodes, false)); got != "1:fragmentation" {
		t.Errorf("after deferral: %q", got)
	}
	// A cancelled context defers as well.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	saturated = false
	ds = m.Decide(t0.Add(time.Hour), nodes, false)
	for r := range first(m.Start(ctx, ds)) {
		if !errors.Is(r.Err, ErrDeferred) || !errors.Is(r.Err, context.Canceled) {
			t.Errorf("cancelled: %v", r.Err)
		}
	}
}

func TestVerdict(t *testing.T) {
	cfg := DefaultConfig()
	above := func(node int, u float64) NodeIndex {
		return NodeIndex{Node: node, Fragmentation: Fragmentation{Order: 3, Unusable: u}}
	}
	since := t0.Add(-time.Hour)
	tests := []struct {
		name  string
		mode  Mode
		nodes []NodeState
		want  check.Status
		msg   string
		probs []int
	}{
		{"healthy", ModeFragmentation, []NodeState{{NodeIndex: above(0, 0.1), CanCompact: true}, {NodeIndex: above(1, 0.35), CanCompact: true}},
			check.OK, "memory fragmentation ok: worst node 1, 35% unusable at order 3", nil},
		{"pending", ModeFragmentation, []NodeState{{NodeIndex: above(0, 0.93), AboveSince: since, CanCompact: true}},
			check.OK, "node 0: 93% of free memory unusable at order 3, compaction pending", nil},
		{"at the threshold is not above", ModeFragmentation, []NodeState{{NodeIndex: above(0, 0.8), CanCompact: false}},
			check.OK, "memory fragmentation ok: worst node 0, 80% unusable at order 3", nil},
		{"off", ModeOff, []NodeState{{NodeIndex: above(0, 0.93), AboveSince: since, CanCompact: true}},
			check.Problem, "node 0: 93% of free memory unusable at order 3, compaction off", []int{0}},
		{"cannot", ModeFragmentation, []NodeState{{NodeIndex: above(0, 0.93), AboveSince: since}},
			check.Problem, "node 0: 93% of free memory unusable at order 3, kernel cannot compact", []int{0}},
		{"did not help", ModeFragmentation, []NodeState{{NodeIndex: above(0, 0.93), AboveSince: since, CanCompact: true,
			LastResult: &Result{Start: since.Add(time.Minute), IndexBefore: 0.95, IndexAfter: 0.91}}},
			check.Problem, "node 0: 93% of free memory unusable at order 3, compaction did not help", []int{0}},
		{"failed", ModePeriodic, []NodeState{{NodeIndex: above(0, 0.93), AboveSince: since, CanCompact: true,
			LastResult: &Result{Start: since, IndexAfter: -1, Err: errors.New("EBUSY")}}},
			check.Problem, "node 0: 93% of free memory unusable at order 3, compaction failed", []int{0}},
		{"helped before this episode", ModeFragmentation, []NodeState{{NodeIndex: above(0, 0.93), AboveSince: since, CanCompact: true,
			LastResult: &Result{Start: since.Add(-time.Hour), IndexAfter: 0.95}}},
			check.OK, "node 0: 93% of free memory unusable at order 3, compaction pending", nil},
		{"two nodes", ModeOff, []NodeState{{NodeIndex: above(0, 0.99)}, {NodeIndex: above(1, 0.999)}, {NodeIndex: above(2, 0.5)}},
			check.Problem, "node 0: 99% of free memory unusable at order 3, compaction off (+1 nodes)", []int{0, 1}},
		{"no nodes", ModeFragmentation, nil, check.Unknown, "compaction: no NUMA node in buddyinfo", nil},
	}
	for _, tc := range tests {
		c := cfg
		c.Mode = tc.mode
		v := State{Config: c, Updated: t0, Nodes: tc.nodes}.Report()
		if v.Status != tc.want || v.Message != tc.msg || len(v.ProblemNodes) != len(tc.probs) {
			t.Errorf("%s: %+v, want %s %q %v", tc.name, v, tc.want, tc.msg, tc.probs)
		}
		if len(v.Message) > 80 {
			t.Errorf("%s: message of %d bytes", tc.name, len(v.Message))
		}
	}
	if v := (State{Config: cfg}).Report(); v.Status != check.Unknown || v.Check != CheckName {
		t.Errorf("empty state: %+v", v)
	}
}

func TestManagerVerdictAfterCompactions(t *testing.T) {
	fsys, root := fixtureFS(t, "fragmented", []int{0}, false)
	m := newTestManager(t, fsys, DefaultConfig(), Options{})
	nodes := mustRead(t, m)
	ds := m.Decide(t0, nodes, false)
	if v := m.Report(); v.Status != check.OK || !strings.Contains(v.Message, "pending") {
		t.Errorf("before compaction: %+v", v)
	}
	// The kernel cannot do better: the index stays where it was.
	for r := range first(m.Start(context.Background(), ds)) {
		if r.Err != nil || r.IndexAfter != r.IndexBefore {
			t.Fatalf("result %+v", r)
		}
	}
	m.Decide(t0.Add(10*time.Minute), mustRead(t, m), false)
	if v := m.Report(); v.Status != check.Problem || !strings.Contains(v.Message, "did not help") {
		t.Errorf("after a useless compaction: %+v", v)
	}
	// It heals: ok again, and the episode ends.
	writeFile(t, filepath.Join(root, "proc", "buddyinfo"), readTestdata(t, "buddyinfo", "healthy"))
	m.Decide(t0.Add(20*time.Minute), mustRead(t, m), false)
	if v := m.Report(); v.Status != check.OK || !strings.HasPrefix(v.Message, "memory fragmentation ok") {
		t.Errorf("healed: %+v", v)
	}
}

func TestCheckOnce(t *testing.T) {
	cfg := DefaultConfig()
	fsys, _ := fixtureFS(t, "healthy", []int{0}, false)
	if v, err := CheckOnce(fsys, cfg); err != nil || v.Status != check.OK || len(v.Nodes) != 1 || v.Check != CheckName {
		t.Errorf("healthy: %+v %v", v, err)
	}
	fsys, _ = fixtureFS(t, "fragmented", []int{0}, false)
	if v, _ := CheckOnce(fsys, cfg); v.Status != check.OK || !strings.Contains(v.Message, "pending") {
		t.Errorf("fragmented, compaction possible: %+v", v)
	}
	cfg.Mode = ModeOff
	if v, _ := CheckOnce(fsys, cfg); v.Status != check.Problem || len(v.ProblemNodes) != 1 {
		t.Errorf("fragmented, mode off: %+v", v)
	}
	if err := os.Remove(fsys.Proc("buddyinfo")); err != nil {
		t.Fatal(err)
	}
	if v, err := CheckOnce(fsys, cfg); err == nil || v.Status != check.Unknown || len(v.Message) > check.MaxMessage {
		t.Errorf("no buddyinfo: %+v %v", v, err)
	}
}

func TestStateJSONAndRestore(t *testing.T) {
	fsys, _ := fixtureFS(t, "two-node", []int{0, 1}, false)
	m := newTestManager(t, fsys, DefaultConfig(), Options{})
	m.write = func(string, []byte) error { return errors.New("device busy") }
	nodes := mustRead(t, m)
	for range first(m.Start(context.Background(), m.Decide(t0, nodes, false))) {
	}
	st := m.State()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"error":"compact node 1: device busy"`) || !strings.Contains(string(b), `"unusable_index":1`) {
		t.Errorf("state JSON: %s", b)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Fresh(t0.Add(19*time.Minute)) || back.Fresh(t0.Add(21*time.Minute)) {
		t.Error("freshness is not twice the check interval")
	}
	if r := back.Nodes[1].LastResult; r == nil || r.Err == nil || r.Err.Error() != "compact node 1: device busy" {
		t.Errorf("round trip lost the error: %+v", r)
	}
	if v := back.Report(); v.Status != check.Problem || !strings.Contains(v.Message, "compaction failed") {
		t.Errorf("verdict from the saved state: %+v", v)
	}
	// A restarted daemon keeps the pacing and the safety schedule.
	m2 := newTestManager(t, fsys, DefaultConfig(), Options{Jitter: jitterOf(0)})
	m2.Restore(back)
	if got := decisionsString(m2.Decide(t0.Add(time.Minute), nodes, false)); got != "1:fragmentation/cooldown" {
		t.Errorf("after restore: %q", got)
	}
	if !m2.NextSafety().Equal(st.NextSafety) {
		t.Errorf("next safety %v, want %v", m2.NextSafety(), st.NextSafety)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.Mode = "sometimes" },
		func(c *Config) { c.CheckInterval = 0 },
		func(c *Config) { c.Order = -1 },
		func(c *Config) { c.Order = config.CompactionMaxOrder + 1 },
		func(c *Config) { c.MinInterval = 0 },
		func(c *Config) { c.CheckInterval = time.Millisecond },
		func(c *Config) { c.UnusableIndexThreshold = 1.5 },
		func(c *Config) { c.SafetyInterval = 0 },
		func(c *Config) { c.MinInterval = -time.Second },
	} {
		c := DefaultConfig()
		mut(&c)
		if c.Validate() == nil {
			t.Errorf("%+v is valid", c)
		}
		if _, err := NewManager(nil, c, Options{}); err == nil {
			t.Errorf("NewManager accepted %+v", c)
		}
	}
}

func first(ch <-chan Result, _ bool) <-chan Result { return ch }
