package daemon_test

// The daemon under a real systemd: the nodekeeper binary, built once for this
// test binary, runs as nodekeeper.service (the unit file and journal catalog of
// this repository) in a systemd-nspawn container whose irqbalance moves this
// host's IRQs (Options.APIVFSWritable). The test skews the host's NIC queue
// IRQs itself and watches the daemon find and repair it through systemd's
// D-Bus API, with the journal, the metrics endpoint, the state file and
// systemctl as the witnesses. See package nspawn for when it skips; the host's
// IRQ masks are restored after the container stops.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/testenv/irqsnap"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
	"github.com/nodekeeper/nodekeeper/internal/testenv/nspawn"
)

const (
	nkUnit   = "nodekeeper.service"
	irqbUnit = "irqbalance.service"

	// The daemon's settings in the container (config.yaml below).
	checkInterval = 2 * time.Second
	settleDelay   = time.Second
	cooldown      = 10 * time.Second // the validation floor
	verifyTimeout = 20 * time.Second
	watchdogSec   = 3 * time.Second

	poll = 100 * time.Millisecond
)

func configYAML(listen string) string {
	return fmt.Sprintf(`# written by the daemon's container test
metrics:
  listen: %q
irq:
  checkInterval: %s
  settleDelay: %s
  minSpreadRatio: 1
  cooldown: %s
  verifyTimeout: %s
`, listen, checkInterval, settleDelay, cooldown, verifyTimeout)
}

const watchdogDropin = `[Service]
WatchdogSec=3s
`

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

// buildNodekeeper builds the nodekeeper binary (static, so it runs on the
// container's libc whatever it is) into dir.
func buildNodekeeper(t *testing.T, dir string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found to build the daemon: %v", err)
	}
	out := filepath.Join(dir, "nodekeeper")
	start := time.Now()
	cmd := exec.Command(gobin, "build", "-o", out, "./cmd/nodekeeper")
	cmd.Dir = repoFile(t, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/nodekeeper: %v\n%s", err, b)
	}
	t.Logf("built nodekeeper in %v", time.Since(start).Round(time.Millisecond))
	return out
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

// waitNoNspawn waits until no systemd-nspawn runs on this host: one container
// at a time, whoever booted the other one.
func waitNoNspawn(t *testing.T) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(3 * time.Minute)
	logged := false
	for {
		pids := nspawnPIDs()
		if len(pids) == 0 {
			if logged {
				t.Logf("waited %v for other containers to stop", time.Since(start).Round(time.Second))
			}
			return
		}
		if !logged {
			t.Logf("systemd-nspawn is running (pids %v): waiting for it to stop", pids)
			logged = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd-nspawn still running after %v (pids %v)", time.Since(start).Round(time.Second), pids)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func nspawnPIDs() []int {
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	var pids []int
	for _, f := range comms {
		b, err := os.ReadFile(f)
		if err != nil || strings.TrimSpace(string(b)) != "systemd-nspawn" {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		pids = append(pids, pid)
	}
	return pids
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

// metric returns the value of the sample of name whose labels include all
// of labels (as `key="value"`), and whether there is one.
func (n *node) metric(t *testing.T, name string, labels ...string) (float64, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(n.ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.listen+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s: %s", resp.Status, b)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		series, value, ok := strings.Cut(rest, " ")
		if !ok || (series != "" && !strings.HasPrefix(series, "{")) {
			continue
		}
		all := true
		for _, l := range labels {
			all = all && strings.Contains(series, l)
		}
		if !all {
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		return v, true
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	return 0, false
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

// install puts the daemon's unit, catalog, configuration and a watchdog
// drop-in into the container.
func (n *node) install(t *testing.T) {
	t.Helper()
	read := func(rel string) []byte {
		b, err := os.ReadFile(repoFile(t, rel))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	files := []struct {
		path string
		data []byte
	}{
		{"/etc/systemd/system/" + nkUnit, read("systemd/nodekeeper.service")},
		{"/etc/systemd/system/" + nkUnit + ".d/50-watchdog.conf", []byte(watchdogDropin)},
		{"/usr/lib/systemd/catalog/nodekeeper.catalog", read("systemd/nodekeeper.catalog")},
		{"/etc/nodekeeper/config.yaml", []byte(configYAML(n.listen))},
	}
	for _, f := range files {
		if err := n.c.WriteFile(f.path, f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n.exec(t, "systemctl", "daemon-reload")
	n.exec(t, "journalctl", "--update-catalog")
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

func TestNspawnDaemon(t *testing.T) {
	nspawn.Require(t)
	host, err := hostfs.New(hostfs.DefaultPaths())
	if err != nil {
		t.Fatal(err)
	}
	n := &node{host: host, listen: freePort(t)}
	n.ctx = t.Context()
	rep := n.hostCheck()
	if rep.Status == check.Unknown || len(rep.NICIRQs) < 2 || rep.Online.Len() < 2 {
		layer.Unavailable(t, "nspawn", "this host cannot show a skew: check %s (%s), %d NIC queue IRQs, online CPUs %s",
			rep.Status, rep.Message, len(rep.NICIRQs), rep.Online.List())
	}
	for _, q := range rep.NICIRQs {
		n.irqs = append(n.irqs, q.IRQ)
	}
	n.iface = rep.NICIRQs[0].Interface
	t.Logf("host NIC %s: queue IRQs %v, masks %v, online CPUs %s", n.iface, n.irqs, n.masks(t), rep.Online.List())

	bin := buildNodekeeper(t, t.TempDir())
	waitNoNspawn(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	n.ctx = ctx

	// irqbalance 1.9 clears an IRQ's "moved" flag only when it writes the
	// mask: an IRQ that already sits where irqbalance's first placement puts
	// it keeps the flag, and irqbalance then writes that mask back every
	// interval, undoing any skew within a second. Starting from the kernel's
	// default masks (every online CPU) makes the container's irqbalance write
	// each mask once and then leave the IRQs alone, as on the nodes of the
	// incident. For the same reason nobody but nodekeeper restarts irqbalance
	// before the last skew below.
	irqsnap.Guard(t)
	for _, q := range n.irqs {
		if err := host.WriteAffinity(q, rep.Online); err != nil {
			t.Fatalf("IRQ %d: mask all online CPUs: %v", q, err)
		}
	}
	n.c = nspawn.Boot(t, nspawn.Options{
		Name:           "nk-daemon",
		APIVFSWritable: true,
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
	n.install(t)

	var (
		nkPID    int           // nodekeeper's MainPID since the first start
		nkStart  time.Duration // when it started, on CLOCK_MONOTONIC
		nextJrnl int           // journal entries looked at so far
	)
	ok := t.Run("skew repaired by restarting irqbalance", func(t *testing.T) {
		irqbStart := n.startedAt(t, irqbUnit)
		placed := n.settled(t, 2*time.Second, 15*time.Second)
		t.Logf("irqbalance (started %v ago) placed the NIC IRQs: %v",
			(monotonic() - irqbStart).Round(10*time.Millisecond), placed)

		skewAt := n.skew(t)
		// A running irqbalance does not undo a skew by itself: watch it while
		// the cool-down since its start runs out.
		ready := irqbStart + cooldown + 300*time.Millisecond
		skewed := n.masks(t)
		watched := time.Now()
		for monotonic() < ready || time.Since(watched) < 3*time.Second {
			sleep(n.ctx, t, 250*time.Millisecond)
			if m := n.masks(t); !mapsEqual(m, skewed) {
				t.Fatalf("irqbalance moved the skewed NIC IRQs by itself %v after the skew: %v -> %v",
					since(skewAt), skewed, m)
			}
		}
		t.Logf("irqbalance left the skew (%v) alone for %v", skewed, since(watched))

		before := n.mainPID(t, irqbUnit)
		from := len(n.journal(t))
		startAt := time.Now()
		n.exec(t, "systemctl", "start", nkUnit)
		t.Logf("systemctl start %s returned after %v (READY=1)", nkUnit, since(startAt))
		nkPID = n.mainPID(t, nkUnit)
		nkStart = n.startedAt(t, nkUnit)

		verifiedAt, rep := n.waitSpread(t, verifyTimeout)
		got, next := n.waitJournal(t, from, verifyTimeout,
			entry{what: "problem detected", msgID: logging.MsgIRQSpreadProblem,
				fields: map[string]string{"CHECK": irq.Name, "INTERFACE": n.iface, "CPUS": "0", "TRIGGER": "start"}},
			entry{what: "repair started", msgID: logging.MsgRepairStarted,
				fields: map[string]string{"ACTION": "irqbalance_restart", "INTERFACE": n.iface}},
			entry{what: "irqbalance restarted", msg: "irqbalance restarted",
				fields: map[string]string{"OLD_PID": strconv.Itoa(before), "UNIT": irqbUnit}},
			entry{what: "repair succeeded", msgID: logging.MsgRepairSucceeded,
				fields: map[string]string{"ACTION": "irqbalance_restart", "RESULT": "success"}},
		)
		nextJrnl = next
		after := n.mainPID(t, irqbUnit)
		if after == 0 || after == before {
			t.Errorf("irqbalance MainPID %d -> %d: not restarted", before, after)
		}
		if got[2]["NEW_PID"] != strconv.Itoa(after) {
			t.Errorf("journal says irqbalance's new main process is %s; systemd says %d", got[2]["NEW_PID"], after)
		}
		if want := min(len(n.irqs), rep.EligibleCPUs.Len()); rep.CPUsUsed.Len() != want {
			t.Errorf("after the repair the NIC IRQs are on CPUs %s; want %d of %s", rep.CPUsUsed.List(), want, rep.EligibleCPUs.List())
		}
		t.Logf("repaired: masks %v, irqbalance MainPID %d -> %d", n.masks(t), before, after)
		t.Logf("skew -> spread on the host: %v (nodekeeper started %v after the skew; start -> spread %v; the daemon timed its repair at %ss)",
			verifiedAt.Sub(skewAt).Round(10*time.Millisecond), startAt.Sub(skewAt).Round(10*time.Millisecond),
			verifiedAt.Sub(startAt).Round(10*time.Millisecond), got[3]["SECONDS"])

		v, found := n.metric(t, "nodekeeper_remediations_total", `action="irqbalance_restart"`, `result="success"`)
		if !found || v < 1 {
			t.Errorf("nodekeeper_remediations_total{action=irqbalance_restart,result=success} = %v (present %v), want >= 1", v, found)
		}
		if s := n.show(t, nkUnit, "StatusText")["StatusText"]; !strings.HasPrefix(s, "IRQ spread ok") {
			t.Errorf("StatusText after the repair = %q, want \"IRQ spread ok…\"", s)
		}
		st := n.state(t)
		if c := st.Checks[irq.Name]; c.Status != string(check.OK) {
			t.Errorf("state file: irq check %q: %s", c.Status, c.Message)
		}
		if i := slices.IndexFunc(st.Actions, func(a state.Action) bool {
			return a.Action == "irqbalance_restart" && a.Result == "success"
		}); i < 0 {
			t.Errorf("state file: no successful irqbalance_restart among %+v", st.Actions)
		}
	})
	if !ok {
		t.FailNow()
	}

	t.Run("journal fields and catalog", func(t *testing.T) {
		j := n.journal(t)
		var own, tagged int
		for _, e := range j {
			if e["SYSLOG_IDENTIFIER"] != logging.SyslogIdentifier {
				continue // systemd's own entries about the unit
			}
			own++
			if e["_SYSTEMD_UNIT"] != nkUnit || e["_PID"] != strconv.Itoa(nkPID) || e["CODE_FUNC"] == "" {
				t.Errorf("entry %q: _SYSTEMD_UNIT %q _PID %q CODE_FUNC %q", e["MESSAGE"], e["_SYSTEMD_UNIT"], e["_PID"], e["CODE_FUNC"])
			}
			if e["MESSAGE_ID"] != "" {
				tagged++
			}
		}
		t.Logf("%d entries of nodekeeper, %d with a MESSAGE_ID", own, tagged)
		if tagged < 3 {
			t.Errorf("%d entries with a MESSAGE_ID; want the problem, the repair and its outcome", tagged)
		}
		problem := slices.IndexFunc(j, func(e map[string]string) bool { return e["MESSAGE_ID"] == logging.MsgIRQSpreadProblem })
		if problem < 0 || j[problem]["PRIORITY"] != "4" || j[problem]["CHECK"] != "irq" || j[problem]["CPUS"] == "" {
			t.Errorf("problem entry without PRIORITY=4, CHECK, CPUS: %v", j[max(problem, 0)])
		}
		out := n.exec(t, "journalctl", "--no-pager", "-x", "-u", nkUnit)
		for _, want := range []string{
			"NIC queue IRQs of " + n.iface + " are not spread over enough CPUs",
			"Repairing the NIC IRQ spread (irqbalance_restart)",
			"NIC IRQ spread repaired (irqbalance_restart)",
			"The repair irqbalance_restart ran and the irq check passes again",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("journalctl -x -u %s does not show %q:\n%s", nkUnit, want, out)
			}
		}
	})

	dbusRestarted := -1 // journal index at the D-Bus restart
	t.Run("D-Bus restarted while running", func(t *testing.T) {
		dbusRestarted = nextJrnl
		n.exec(t, "systemctl", "restart", "dbus.service")
		_, nextJrnl = n.waitJournal(t, nextJrnl, 15*time.Second,
			entry{what: "watch re-established", msg: "D-Bus connection re-established", fields: map[string]string{"UNIT": irqbUnit}})
		props := n.show(t, nkUnit, "MainPID", "ActiveState", "NRestarts")
		if props["MainPID"] != strconv.Itoa(nkPID) || props["ActiveState"] != "active" || props["NRestarts"] != "0" {
			t.Fatalf("nodekeeper after restarting D-Bus: %v; want MainPID %d, active, no restarts", props, nkPID)
		}
	})

	t.Run("skew after the D-Bus restart repaired over D-Bus", func(t *testing.T) {
		n.settled(t, 1500*time.Millisecond, 15*time.Second)
		n.afterCooldown(t)
		before := n.mainPID(t, irqbUnit)
		from := len(n.journal(t))
		skewAt := n.skew(t)
		verifiedAt, rep := n.waitSpread(t, checkInterval+verifyTimeout)
		got, next := n.waitJournal(t, from, verifyTimeout,
			entry{what: "problem detected", msgID: logging.MsgIRQSpreadProblem, fields: map[string]string{"TRIGGER": "timer"}},
			entry{what: "repair started", msgID: logging.MsgRepairStarted, fields: map[string]string{"ACTION": "irqbalance_restart"}},
			entry{what: "irqbalance restarted", msg: "irqbalance restarted", fields: map[string]string{"OLD_PID": strconv.Itoa(before)}},
			entry{what: "repair succeeded", msgID: logging.MsgRepairSucceeded, fields: map[string]string{"ACTION": "irqbalance_restart"}},
		)
		nextJrnl = next
		if after := n.mainPID(t, irqbUnit); after == before || got[2]["NEW_PID"] != strconv.Itoa(after) {
			t.Errorf("irqbalance MainPID %d -> %d, journal says new pid %s", before, after, got[2]["NEW_PID"])
		}
		t.Logf("skew -> spread on the host: %v (CPUs %s; the daemon timed its repair at %ss)",
			verifiedAt.Sub(skewAt).Round(10*time.Millisecond), rep.CPUsUsed.List(), got[3]["SECONDS"])
		if v, _ := n.metric(t, "nodekeeper_remediations_total", `action="irqbalance_restart"`, `result="success"`); v < 2 {
			t.Errorf("nodekeeper_remediations_total{action=irqbalance_restart,result=success} = %v, want 2", v)
		}
		if pid := n.mainPID(t, nkUnit); pid != nkPID {
			t.Errorf("nodekeeper MainPID %d, was %d", pid, nkPID)
		}
		// The repair went through the daemon's own connection, which had
		// to notice the loss and dial again.
		if j := n.journal(t); dbusRestarted >= 0 && !slices.ContainsFunc(j[dbusRestarted:next], func(e map[string]string) bool {
			return strings.Contains(e["MESSAGE"], "reconnected to systemd over D-Bus")
		}) {
			t.Errorf("no \"reconnected to systemd over D-Bus\" between the D-Bus restart and the repair:\n%s",
				formatJournal(j[dbusRestarted:next]))
		}
	})

	t.Run("irqbalance restarted by someone else", func(t *testing.T) {
		restartAt := time.Now()
		n.exec(t, "systemctl", "restart", irqbUnit)
		pid := n.mainPID(t, irqbUnit)
		_, nextJrnl = n.waitJournal(t, nextJrnl, 5*time.Second,
			entry{what: "re-check scheduled", msg: "re-checking after it settles",
				fields: map[string]string{"UNIT": irqbUnit, "MAIN_PID": strconv.Itoa(pid)}})
		t.Logf("nodekeeper noticed irqbalance's new main process %d in %v", pid, since(restartAt))
		// The re-check: the state file's check is newer than restart + settle.
		deadline := time.Now().Add(settleDelay + checkInterval + 3*time.Second)
		for {
			c := n.state(t).Checks[irq.Name]
			if c.Time.After(restartAt.Add(settleDelay)) {
				t.Logf("checked again %v after the restart: %s", c.Time.Sub(restartAt).Round(10*time.Millisecond), c.Status)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no check since irqbalance's restart (last %v)", c.Time)
			}
			sleep(n.ctx, t, poll)
		}
	})

	t.Run("status and watchdog", func(t *testing.T) {
		if up := monotonic() - nkStart; up < 10*time.Second+watchdogSec {
			sleep(n.ctx, t, 10*time.Second+watchdogSec-up)
		}
		props := n.show(t, nkUnit, "StatusText", "ActiveState", "SubState", "MainPID", "NRestarts",
			"WatchdogUSec", "WatchdogTimestampMonotonic", "Result")
		t.Logf("%s up %v: %v", nkUnit, (monotonic() - nkStart).Round(time.Second), props)
		if props["ActiveState"] != "active" || props["SubState"] != "running" || props["Result"] != "success" {
			t.Errorf("ActiveState/SubState/Result = %s/%s/%s", props["ActiveState"], props["SubState"], props["Result"])
		}
		if !strings.HasPrefix(props["StatusText"], "IRQ spread") {
			t.Errorf("StatusText = %q, want it to start with \"IRQ spread\"", props["StatusText"])
		}
		if props["WatchdogUSec"] != "3s" {
			t.Errorf("WatchdogUSec = %q: the drop-in did not apply", props["WatchdogUSec"])
		}
		if props["NRestarts"] != "0" || props["MainPID"] != strconv.Itoa(nkPID) {
			t.Errorf("NRestarts %s MainPID %s; want 0 and %d (the watchdog must never fire)", props["NRestarts"], props["MainPID"], nkPID)
		}
		us, _ := strconv.ParseInt(props["WatchdogTimestampMonotonic"], 10, 64)
		if age := monotonic() - time.Duration(us)*time.Microsecond; us == 0 || age > watchdogSec {
			t.Errorf("last watchdog ping %v ago (WatchdogTimestampMonotonic %d), WatchdogSec %v", age, us, watchdogSec)
		}
	})

	t.Run("stop", func(t *testing.T) {
		from := len(n.journal(t))
		start := time.Now()
		n.exec(t, "systemctl", "stop", nkUnit)
		took := time.Since(start)
		t.Logf("systemctl stop %s took %v", nkUnit, took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Errorf("stopping took %v, want < 5s", took)
		}
		props := n.show(t, nkUnit, "ActiveState", "Result", "ExecMainStatus")
		if props["ActiveState"] != "inactive" || props["Result"] != "success" || props["ExecMainStatus"] != "0" {
			t.Errorf("after stop: %v", props)
		}
		n.waitJournal(t, from, time.Second, entry{what: "stopping", msg: "stopping"})
	})

	t.Run("irqbalance masked: spread ourselves", func(t *testing.T) {
		n.exec(t, "systemctl", "mask", "--now", irqbUnit)
		if p := n.show(t, irqbUnit, "LoadState", "ActiveState"); p["LoadState"] != "masked" || p["ActiveState"] != "inactive" {
			t.Fatalf("irqbalance after mask --now: %v", p)
		}
		from := len(n.journal(t))
		skewAt := n.skew(t)
		startAt := time.Now()
		n.exec(t, "systemctl", "start", nkUnit)
		verifiedAt, rep := n.waitSpread(t, verifyTimeout)
		got, _ := n.waitJournal(t, from, verifyTimeout,
			entry{what: "problem detected", msgID: logging.MsgIRQSpreadProblem},
			entry{what: "why irqbalance is not used", msg: "irqbalance.service is masked: spreading the IRQs ourselves",
				fields: map[string]string{"ACTION": "irq_spread"}},
			entry{what: "repair started", msgID: logging.MsgRepairStarted, fields: map[string]string{"ACTION": "irq_spread"}},
			entry{what: "masks written", msg: "IRQ masks written", fields: map[string]string{"MANAGED": "0"}},
			entry{what: "repair succeeded", msgID: logging.MsgRepairSucceeded,
				fields: map[string]string{"ACTION": "irq_spread", "RESULT": "success"}},
		)
		w, _ := strconv.Atoi(got[3]["WRITTEN"])
		u, _ := strconv.Atoi(got[3]["UNCHANGED"])
		if w < 1 || w+u != len(n.irqs) {
			t.Errorf("IRQ masks written: WRITTEN=%s UNCHANGED=%s for %d IRQs", got[3]["WRITTEN"], got[3]["UNCHANGED"], len(n.irqs))
		}
		masks := n.masks(t)
		cpus := cpuset.New()
		for _, q := range n.irqs {
			s, err := cpuset.ParseList(masks[q])
			if err != nil || s.Len() != 1 {
				t.Errorf("IRQ %d mask %q after the spread, want one CPU", q, masks[q])
			}
			cpus = cpus.Union(s)
		}
		if cpus.Len() != min(len(n.irqs), rep.EligibleCPUs.Len()) {
			t.Errorf("spread masks %v: CPUs %s", masks, cpus.List())
		}
		t.Logf("spread by nodekeeper: masks %v; skew -> spread %v, start -> spread %v (the daemon timed it at %ss); check: %s",
			masks, verifiedAt.Sub(skewAt).Round(10*time.Millisecond), verifiedAt.Sub(startAt).Round(10*time.Millisecond),
			got[4]["SECONDS"], rep.Message)
		if v, found := n.metric(t, "nodekeeper_remediations_total", `action="irq_spread"`, `result="success"`); v != 1 {
			t.Errorf("nodekeeper_remediations_total{action=irq_spread,result=success} = %v (present %v), want 1", v, found)
		}
	})
}
