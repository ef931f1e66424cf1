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
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/state"
	"github.com/nodekeeper/nodekeeper/internal/testenv/promtext"
)

// The daemon's settings in the container (config.yaml below; irq.cooldown is
// cooldown).
const (
	checkInterval    = 2 * time.Second
	settleDelay      = time.Second
	verifyTimeout    = 20 * time.Second
	watchdogInterval = 3 * time.Second
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

func TestNspawnDaemon(t *testing.T) {
	n := bootNode(t, "nk-daemon", true)
	n.install(t, configYAML(n.listen), file{"/etc/systemd/system/" + nkUnit + ".d/50-watchdog.conf", []byte(watchdogDropin)})

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
				fields: map[string]string{"CHECK": string(irq.Name), "INTERFACE": n.iface, "CPUS": "0", "TRIGGER": "start"}},
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

		v, found := n.metric(t, "nodekeeper_remediations_total", promtext.Labels{"action": "irqbalance_restart", "result": "success"})
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
			// The periodic check sees the skew, and judges it irq.settleDelay later.
			entry{what: "problem detected", msgID: logging.MsgIRQSpreadProblem, fields: map[string]string{"TRIGGER": "timer (re-check)"}},
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
		if v, _ := n.metric(t, "nodekeeper_remediations_total", promtext.Labels{"action": "irqbalance_restart", "result": "success"}); v < 2 {
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
		if up := monotonic() - nkStart; up < 10*time.Second+watchdogInterval {
			sleep(n.ctx, t, 10*time.Second+watchdogInterval-up)
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
		if age := monotonic() - time.Duration(us)*time.Microsecond; us == 0 || age > watchdogInterval {
			t.Errorf("last watchdog ping %v ago (WatchdogTimestampMonotonic %d), WatchdogSec %v", age, us, watchdogInterval)
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
		if v, found := n.metric(t, "nodekeeper_remediations_total", promtext.Labels{"action": "irq_spread", "result": "success"}); v != 1 {
			t.Errorf("nodekeeper_remediations_total{action=irq_spread,result=success} = %v (present %v), want 1", v, found)
		}
	})
}
