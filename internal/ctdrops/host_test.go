package ctdrops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/config"
	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/watch"
)

const snmp = `Ip: Forwarding DefaultTTL
Ip: 1 64
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 100 2 %d 50 %d 0 0 0 0
`

type tree struct {
	t    *testing.T
	dir  string
	proc string
}

func newTree(t *testing.T) *tree {
	dir := t.TempDir()
	return &tree{t: t, dir: dir, proc: filepath.Join(dir, "proc")}
}

func (x *tree) write(rel, text string) {
	x.t.Helper()
	p := filepath.Join(x.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		x.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		x.t.Fatal(err)
	}
}

func (x *tree) link(target, rel string) {
	x.t.Helper()
	if err := os.Symlink(target, filepath.Join(x.dir, rel)); err != nil {
		x.t.Fatal(err)
	}
}

func (x *tree) fs() *hostfs.FS {
	h, err := hostfs.New(hostfs.Paths{Proc: x.proc, Sys: filepath.Join(x.dir, "sys"), Cgroup: filepath.Join(x.dir, "cg"), Root: filepath.Join(x.dir, "root")})
	if err != nil {
		x.t.Fatal(err)
	}
	return h
}

func sprintf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

func TestHostReadsAFixtureTree(t *testing.T) {
	x := newTree(t)
	stat, err := os.ReadFile("../conntrack/testdata/nf_conntrack.6.x")
	if err != nil {
		t.Fatal(err)
	}
	x.write("proc/net/stat/nf_conntrack", string(stat))
	x.write("proc/sys/net/netfilter/nf_conntrack_max", "1000\n")
	x.write("proc/sys/net/netfilter/nf_conntrack_count", "420\n")
	x.write("proc/1/net/snmp", sprintf(snmp, 7, 3))
	x.link("1", "proc/self") // as on a live host: the reader's own process
	// A CoreDNS pod (named through its cgroup and kubelet's log directory),
	// a second process in the same namespace, and an unrelated process.
	uid := "0d0e5c2a-6b1f-4d39-9a0e-6f0f3c1b2a11"
	x.write("proc/40/comm", "coredns\n")
	x.write("proc/40/cgroup", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+strings.ReplaceAll(uid, "-", "_")+".slice/cri-containerd-abc.scope\n")
	x.write("proc/40/net/snmp", sprintf(snmp, 9, 8))
	x.write("proc/41/comm", "sleep\n")
	x.write("root/var/log/pods/kube-system_coredns-7d9f_"+uid+"/.keep", "")
	h := NewHost(x.fs(), func() time.Time { return t0 })
	s, err := h.Read(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.Source != "procfs" || s.Entries != 420 || s.Max != 1000 || len(s.CPUs) != 2 || conntrack.Sum(s.CPUs).Drop != 2 {
		t.Errorf("sample %+v", s)
	}
	if !s.HasHostUDP || s.HostUDP != (UDP{RcvbufErrors: 3, InErrors: 7}) {
		t.Errorf("host UDP %+v %v", s.HostUDP, s.HasHostUDP)
	}
	if len(s.DNS) != 1 || s.DNS[0].Name != "kube-system/coredns-7d9f" || s.DNS[0].PID != 40 || s.DNS[0].RcvbufErrors != 8 {
		t.Errorf("DNS pods %+v", s.DNS)
	}
	// A DNS process that went away is looked for again, not kept.
	if err := os.RemoveAll(filepath.Join(x.proc, "40")); err != nil {
		t.Fatal(err)
	}
	if s, err := h.Read(t.Context()); err != nil || len(s.DNS) != 0 {
		t.Errorf("after the pod left: %+v %v", s.DNS, err)
	}
}

func TestHostWithoutConntrack(t *testing.T) {
	x := newTree(t)
	x.write("proc/1/net/snmp", sprintf(snmp, 0, 0))
	x.link("1", "proc/self")
	_, err := NewHost(x.fs(), time.Now).Read(t.Context())
	if !errors.Is(err, ErrNoConntrack) {
		t.Fatalf("err %v, want ErrNoConntrack", err)
	}
	if r := Unavailable(err); r.Status != check.Unknown || r.Source != "unavailable" {
		t.Errorf("%+v", r)
	}
	x.write("proc/net/stat/nf_conntrack", "entries drop\n01 02\n")
	if _, err := NewHost(x.fs(), time.Now).Read(t.Context()); err == nil || errors.Is(err, ErrNoConntrack) {
		t.Errorf("an odd file: err %v, want a parse error", err)
	}
}

// fakeReader hands out samples in turn.
type fakeReader struct {
	samples []Sample
	errs    []error
}

func (f *fakeReader) Read(context.Context) (Sample, error) {
	s, err := f.samples[0], f.errs[0]
	if len(f.samples) > 1 {
		f.samples, f.errs = f.samples[1:], f.errs[1:]
	}
	return s, err
}

func TestWatchEpisodesAndMetrics(t *testing.T) {
	var logs bytes.Buffer
	m := metrics.New()
	env := watch.Env{Clock: clock.NewFake(t0), Log: slog.New(slog.NewTextHandler(&logs, nil)), Metrics: m}
	quiet := cpu(0, conntrack.Counters{Drop: 5})
	drop := cpu(0, conntrack.Counters{Drop: 65, InsertFailed: 60})
	at := func(i int, c conntrack.CPUStats) Sample {
		s := sample(time.Duration(i)*time.Minute, 10, 1000, c)
		s.HostUDP, s.HasHostUDP = UDP{RcvbufErrors: uint64(i)}, true
		return s
	}
	r := &fakeReader{
		samples: []Sample{{}, at(1, quiet), at(2, quiet), at(3, drop), at(4, cpu(0, conntrack.Counters{Drop: 125, InsertFailed: 120})), at(5, drop), at(6, drop)},
		errs:    []error{ErrNoConntrack, nil, nil, nil, nil, nil, nil},
	}
	cfgAll := config.Default()
	w, err := NewWatch(env, cfgAll, r)
	if err != nil {
		t.Fatal(err)
	}
	var got []check.Status
	for i := range 7 {
		rep := w.Tick(t.Context(), t0.Add(time.Duration(i)*time.Minute))
		got = append(got, rep.Status)
	}
	want := []check.Status{check.Unknown, "", check.OK, check.Problem, check.Problem, check.OK, check.OK}
	if !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	text := logs.String()
	for msg, n := range map[string]int{
		"MESSAGE_ID=d61eaef2136b4918b4939f5b8b52e57a": 1, // drops: once for the episode
		"MESSAGE_ID=76eb7f65b2994685b830096b1d53c9a2": 1, // insert failures: once
		"MESSAGE_ID=2129095269cc44ac84a364c953040c56": 1, // ok again: once
		"connection tracking is not loaded":           1,
		"the counters are read again":                 1,
	} {
		if c := strings.Count(text, msg); c != n {
			t.Errorf("%q logged %d times, want %d\n%s", msg, c, n, text)
		}
	}
	wantText := `
# HELP nodekeeper_conntrack_events_total Conntrack events counted by the kernel, summed over CPUs: insert_failed, drop, early_drop, clash_resolve, chaintoolong.
# TYPE nodekeeper_conntrack_events_total counter
nodekeeper_conntrack_events_total{event="chaintoolong"} 0
nodekeeper_conntrack_events_total{event="clash_resolve"} 0
nodekeeper_conntrack_events_total{event="drop"} 65
nodekeeper_conntrack_events_total{event="early_drop"} 0
nodekeeper_conntrack_events_total{event="insert_failed"} 60
# HELP nodekeeper_udp_rcvbuf_errors_total UDP datagrams dropped because a socket's receive buffer was full: netns=host, or dns (the cluster DNS pods' namespaces).
# TYPE nodekeeper_udp_rcvbuf_errors_total counter
nodekeeper_udp_rcvbuf_errors_total{netns="host"} 6
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(wantText),
		"nodekeeper_conntrack_events_total", "nodekeeper_udp_rcvbuf_errors_total"); err != nil {
		t.Error(err)
	}
}

func TestIsTableFull(t *testing.T) {
	for rec, want := range map[string]bool{
		"4,1234,5678,-;nf_conntrack: nf_conntrack: table full, dropping packet\n":   true,
		"4,1234,5678,-;nf_conntrack: table full, dropping packet\n SUBSYSTEM=net\n": true,
		"6,1,2,-;eth0: link up\n": false,
		"4,1,2,-;something\n nf_conntrack: table full, dropping packet\n": false, // a continuation line is not the message
		"no separator nf_conntrack: table full, dropping packet":          false,
	} {
		if got := IsTableFull([]byte(rec)); got != want {
			t.Errorf("IsTableFull(%q) = %v", rec, got)
		}
	}
}
