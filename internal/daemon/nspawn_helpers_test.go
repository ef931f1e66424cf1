package daemon_test

// What the container tests of the daemon share: the nodekeeper binary built
// for the test, a container (package nspawn) with nodekeeper's unit, catalog
// and configuration installed, and the witnesses — systemctl, the journal,
// the metrics endpoint, the state file and this host's NIC IRQ masks.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/testenv/nkbin"

	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/testenv/irqsnap"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
	"github.com/nodekeeper/nodekeeper/internal/testenv/nspawn"
	"github.com/nodekeeper/nodekeeper/internal/testenv/promtext"
)

const (
	nkUnit      = "nodekeeper.service"
	irqbUnit    = "irqbalance.service"
	kubeletUnit = "kubelet.service"

	// irq.cooldown in the containers: the validation floor.
	cooldown = 10 * time.Second

	poll = 100 * time.Millisecond
)

// bootNode builds the daemon and boots a container named name with it
// installed at /usr/bin/nodekeeper (not yet configured: see install). With
// skew, the test moves this host's NIC queue IRQs: the host must have a NIC
// that can show a skew (else the layer is unavailable), the host's IRQ masks
// are taken (and restored at the end), and the container's irqbalance moves
// the host's IRQs (nspawn.Options.APIVFSWritable).
func bootNode(t *testing.T, name string, skew bool) *node {
	t.Helper()
	nspawn.Require(t)
	host, err := hostfs.New(hostfs.DefaultPaths())
	if err != nil {
		t.Fatal(err)
	}
	n := &node{host: host, listen: freePort(t), ctx: t.Context()}
	var online cpuset.Set
	if skew {
		rep := n.hostCheck()
		if rep.Status == check.Unknown || len(rep.NICIRQs) < 2 || rep.Online.Len() < 2 {
			layer.Unavailable(t, "nspawn", "this host cannot show a skew: check %s (%s), %d NIC queue IRQs, online CPUs %s",
				rep.Status, rep.Message, len(rep.NICIRQs), rep.Online.List())
		}
		for _, q := range rep.NICIRQs {
			n.irqs = append(n.irqs, q.IRQ)
		}
		n.iface = rep.NICIRQs[0].Interface
		online = rep.Online
		t.Logf("host NIC %s: queue IRQs %v, masks %v, online CPUs %s", n.iface, n.irqs, n.masks(t), online.List())
	}

	bin := nkbin.Build(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	n.ctx = ctx

	if skew {
		// irqbalance 1.9 clears an IRQ's "moved" flag only when it writes
		// the mask: an IRQ that already sits where irqbalance's first
		// placement puts it keeps the flag, and irqbalance then writes that
		// mask back every interval, undoing any skew within a second.
		// Starting from the kernel's default masks (every online CPU) makes
		// the container's irqbalance write each mask once and then leave the
		// IRQs alone, as on the nodes of the incident. For the same reason
		// nobody but nodekeeper may restart irqbalance before a skew.
		irqsnap.Guard(t)
		for _, q := range n.irqs {
			if err := host.WriteAffinity(q, online); err != nil {
				t.Fatalf("IRQ %d: mask all online CPUs: %v", q, err)
			}
		}
	}
	n.c = nspawn.Boot(t, nspawn.Options{
		Name:           name,
		APIVFSWritable: skew,
		Binds:          []nspawn.Bind{{Source: bin, Target: "/usr/bin/nodekeeper", ReadOnly: true}},
	})
	t.Cleanup(func() {
		if !t.Failed() && !testing.Verbose() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		j, err := n.c.Journal(ctx, nkUnit)
		if err != nil {
			t.Logf("journal of %s: %v", nkUnit, err)
			return
		}
		t.Logf("journal of %s:\n%s", nkUnit, formatJournal(j))
	})
	return n
}

// repoFile returns the path of a file of this repository (the test runs in
// internal/daemon).
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// freePort returns a loopback address nobody listens on now. The container
// shares this host's network namespace, so its metrics listener must not
// collide with anything here.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// monotonic is CLOCK_MONOTONIC, which the container's systemd shares.
func monotonic() time.Duration {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

func since(t time.Time) time.Duration { return time.Since(t).Round(10 * time.Millisecond) }

// node is the container with nodekeeper installed, and this host's NIC.
type node struct {
	c      *nspawn.Container
	ctx    context.Context
	host   *hostfs.FS
	iface  string
	irqs   []int
	listen string
}

func (n *node) exec(t *testing.T, args ...string) string {
	t.Helper()
	out, err := n.c.Exec(n.ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// show returns unit properties as systemctl show prints them. systemctl talks
// to systemd over its private socket: it works while D-Bus restarts.
func (n *node) show(t *testing.T, unit string, props ...string) map[string]string {
	t.Helper()
	args := []string{"systemctl", "show", unit}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	m := map[string]string{}
	for _, line := range strings.Split(n.exec(t, args...), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

func (n *node) mainPID(t *testing.T, unit string) int {
	t.Helper()
	pid, err := strconv.Atoi(n.show(t, unit, "MainPID")["MainPID"])
	if err != nil {
		t.Fatalf("MainPID of %s: %v", unit, err)
	}
	return pid
}

// startedAt is when unit last left the inactive state, on CLOCK_MONOTONIC.
func (n *node) startedAt(t *testing.T, unit string) time.Duration {
	t.Helper()
	v := n.show(t, unit, "InactiveExitTimestampMonotonic")["InactiveExitTimestampMonotonic"]
	us, err := strconv.ParseInt(v, 10, 64)
	if err != nil || us == 0 {
		t.Fatalf("InactiveExitTimestampMonotonic of %s = %q", unit, v)
	}
	return time.Duration(us) * time.Microsecond
}

// afterCooldown waits until irqbalance started longer ago than irq.cooldown:
// the daemon counts a restart's cool-down from irqbalance's last start, by
// anyone.
func (n *node) afterCooldown(t *testing.T) {
	t.Helper()
	ready := n.startedAt(t, irqbUnit) + cooldown + 300*time.Millisecond
	if wait := ready - monotonic(); wait > 0 {
		t.Logf("waiting %v for irqbalance's last start to be older than irq.cooldown (%v)", wait.Round(10*time.Millisecond), cooldown)
		sleep(n.ctx, t, wait)
	}
}

func sleep(ctx context.Context, t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	case <-time.After(d):
	}
}

// hostCheck runs nodekeeper's irq check on this host with the container's
// settings (minSpreadRatio 1).
func (n *node) hostCheck() *irq.Report {
	opts := irq.Options{MinSpreadRatio: 1, Filter: irq.Filter{Exclude: []string{"ib*"}}, VFMissingAfter: 2 * time.Minute}
	return irq.NewChecker(n.host, irq.Links(n.host), opts, time.Now).Run(n.ctx)
}

// masks returns the requested CPUs of the NIC's queue IRQs.
func (n *node) masks(t *testing.T) map[int]string {
	t.Helper()
	r := n.host.NewIRQReader()
	m := make(map[int]string, len(n.irqs))
	for _, q := range n.irqs {
		a, err := r.Affinity(q)
		if err != nil {
			t.Fatalf("affinity of IRQ %d: %v", q, err)
		}
		m[q] = a.Requested.List()
	}
	return m
}

// skew puts every NIC queue IRQ of this host on CPU 0, as the incident does.
func (n *node) skew(t *testing.T) time.Time {
	t.Helper()
	for _, q := range n.irqs {
		if err := n.host.WriteAffinity(q, cpuset.New(0)); err != nil {
			t.Fatalf("skew IRQ %d onto CPU 0: %v", q, err)
		}
	}
	at := time.Now()
	if rep := n.hostCheck(); rep.Status != check.Problem {
		t.Fatalf("after the skew the check says %s: %s", rep.Status, rep.Message)
	}
	return at
}

// waitSpread waits until the host's NIC queue IRQs are on as many distinct
// CPUs as there are IRQs and CPUs (the check passes at minSpreadRatio 1).
func (n *node) waitSpread(t *testing.T, timeout time.Duration) (time.Time, *irq.Report) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	last := n.masks(t)
	for {
		rep := n.hostCheck()
		if m := n.masks(t); !mapsEqual(m, last) {
			t.Logf("%v: NIC IRQ masks %v", since(start), m)
			last = m
		}
		if rep.Status == check.OK {
			return time.Now(), rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("NIC IRQs still not spread after %v: %s (masks %v)", timeout, rep.Message, n.masks(t))
		}
		sleep(n.ctx, t, poll)
	}
}

// journal returns the entries of nodekeeper.service.
func (n *node) journal(t *testing.T) []map[string]string {
	t.Helper()
	j, err := n.c.Journal(n.ctx, nkUnit)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// entry says what an awaited journal entry looks like.
type entry struct {
	what   string
	msgID  string
	msg    string // substring of MESSAGE
	fields map[string]string
}

func (e entry) match(j map[string]string) bool {
	if e.msgID != "" && j["MESSAGE_ID"] != e.msgID {
		return false
	}
	if e.msg != "" && !strings.Contains(j["MESSAGE"], e.msg) {
		return false
	}
	for k, v := range e.fields {
		if j[k] != v {
			return false
		}
	}
	return true
}

// waitJournal waits for entries matching want, in this order, among the
// entries of nodekeeper.service from index from on, and returns them and the
// index after the last.
func (n *node) waitJournal(t *testing.T, from int, timeout time.Duration, want ...entry) ([]map[string]string, int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j := n.journal(t)
		var got []map[string]string
		i := from
		for _, w := range want {
			for i < len(j) && !w.match(j[i]) {
				i++
			}
			if i == len(j) {
				break
			}
			got = append(got, j[i])
			i++
		}
		if len(got) == len(want) {
			return got, i
		}
		if time.Now().After(deadline) {
			t.Fatalf("journal of %s: no entry %q after %v; entries since #%d:\n%s",
				nkUnit, want[len(got)].what, timeout, from, formatJournal(j[min(from, len(j)):]))
		}
		sleep(n.ctx, t, 200*time.Millisecond)
	}
}

// waitJournalAny waits for the first entry from index from on that matches
// any of want, and returns it and the index after it.
func (n *node) waitJournalAny(t *testing.T, from int, timeout time.Duration, want ...entry) (map[string]string, int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j := n.journal(t)
		for i := from; i < len(j); i++ {
			if slices.ContainsFunc(want, func(w entry) bool { return w.match(j[i]) }) {
				return j[i], i + 1
			}
		}
		if time.Now().After(deadline) {
			what := make([]string, len(want))
			for i, w := range want {
				what[i] = w.what
			}
			t.Fatalf("journal of %s: none of %q after %v; entries since #%d:\n%s",
				nkUnit, what, timeout, from, formatJournal(j[min(from, len(j)):]))
		}
		sleep(n.ctx, t, 200*time.Millisecond)
	}
}

func formatJournal(j []map[string]string) string {
	var b strings.Builder
	for _, e := range j {
		fmt.Fprintf(&b, "  %s", e["MESSAGE"])
		keys := make([]string, 0, len(e))
		for k := range e {
			if !strings.HasPrefix(k, "_") && !strings.HasPrefix(k, "__") && k != "MESSAGE" &&
				!strings.HasPrefix(k, "SYSLOG_") && !strings.HasPrefix(k, "CODE_") && k != "PRIORITY" {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, " %s=%s", k, e[k])
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// metric scrapes the daemon's /metrics and returns the value of the first
// series of the sample name whose labels include all of labels, and whether
// there is one.
func (n *node) metric(t *testing.T, name string, labels promtext.Labels) (float64, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	fams, err := promtext.Scrape(ctx, "http://"+n.listen+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return fams.Value(name, labels)
}

func (n *node) state(t *testing.T) state.State {
	t.Helper()
	b, err := n.c.ReadFile("/" + state.RelPath)
	if err != nil {
		t.Fatal(err)
	}
	var s state.State
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("state file: %v", err)
	}
	return s
}

// file is a file to put into the container.
type file struct {
	path string
	data []byte
}

// install puts the daemon's unit, catalog and configuration (config.yaml,
// validated in the container) and extra files into the container.
func (n *node) install(t *testing.T, config string, extra ...file) {
	t.Helper()
	read := func(rel string) []byte {
		b, err := os.ReadFile(repoFile(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	files := append([]file{
		{"/etc/systemd/system/" + nkUnit, read("systemd/nodekeeper.service")},
		{"/usr/lib/systemd/catalog/nodekeeper.catalog", read("systemd/nodekeeper.catalog")},
	}, extra...)
	for _, f := range files {
		if err := n.c.WriteFile(f.path, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n.writeConfig(t, config)
	n.exec(t, "systemctl", "daemon-reload")
	n.exec(t, "journalctl", "--update-catalog")
}

// writeConfig replaces /etc/nodekeeper/config.yaml in the container and checks
// it with `nodekeeper config validate` there.
func (n *node) writeConfig(t *testing.T, config string) {
	t.Helper()
	if err := n.c.WriteFile("/etc/nodekeeper/config.yaml", []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := n.c.Exec(n.ctx, "nodekeeper", "config", "validate"); err != nil {
		t.Fatalf("config validate in the container: %v\n%s", err, out)
	}
}

// settled waits until irqbalance has placed each NIC IRQ on one CPU and then
// left them alone for quiet.
func (n *node) settled(t *testing.T, quiet, timeout time.Duration) map[int]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last, since := n.masks(t), time.Now()
	for !singleCPUs(last) || time.Since(since) < quiet {
		if time.Now().After(deadline) {
			t.Fatalf("irqbalance has not placed the NIC IRQs, or still moves them, after %v: %v", timeout, last)
		}
		sleep(n.ctx, t, poll)
		if m := n.masks(t); !mapsEqual(m, last) {
			last, since = m, time.Now()
		}
	}
	return last
}

func singleCPUs(masks map[int]string) bool {
	for _, m := range masks {
		if s, err := cpuset.ParseList(m); err != nil || s.Len() != 1 {
			return false
		}
	}
	return true
}

func mapsEqual(a, b map[int]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// hostPID returns this host's PID of the container's process pid.
func (n *node) hostPID(t *testing.T, pid int) int {
	t.Helper()
	hp, err := n.c.HostPID(pid)
	if err != nil {
		t.Fatal(err)
	}
	return hp
}

// entryTime is when a journal entry was logged: the sender's timestamp when
// it sent one (native protocol), else when journald received it.
func entryTime(e map[string]string) time.Time {
	for _, k := range []string{"_SOURCE_REALTIME_TIMESTAMP", "__REALTIME_TIMESTAMP"} {
		if us, err := strconv.ParseInt(e[k], 10, 64); err == nil && us > 0 {
			return time.UnixMicro(us)
		}
	}
	return time.Time{}
}

// countJournal returns how many of the entries from index from on match e.
func countJournal(j []map[string]string, from int, e entry) int {
	n := 0
	for _, x := range j[min(from, len(j)):] {
		if e.match(x) {
			n++
		}
	}
	return n
}

// signal sends sig to this host's process pid, which a test started.
func signal(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("kill -%d %d: %v", sig, pid, err)
	}
}
