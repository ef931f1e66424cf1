package daemon_test

// A VM Freeze end to end, with the real binary under a real systemd: a fake
// Azure IMDS on this host's loopback (the container shares this host's
// network) walks a Freeze event for this VM from Scheduled to Started; while it
// is Started the test skews this host's NIC queue IRQs and pauses the daemon
// for a few seconds with SIGSTOP, as a VM pause stops it; after SIGCONT the
// event goes away, as Azure removes it after the impact. The daemon must see
// one pause (from its clock, tied to the Freeze), check the spread after
// irq.settleDelay, repair it, verify it, and time resume -> verified. Once with
// irqbalance restarted over D-Bus, once with irqbalance masked and the IRQs
// spread by nodekeeper itself.

import (
	"fmt"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/clock"
	"github.com/nodekeeper/nodekeeper/internal/imds/imdstest"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/testenv/nspawn"
	"github.com/nodekeeper/nodekeeper/internal/testenv/promtext"
)

const (
	vmName     = "aks-nodepool1-12345678-vmss_3"
	pauseFor   = 5 * time.Second // SIGSTOP to SIGCONT
	freezeWait = 20 * time.Second
)

func freezeConfigYAML(listen, endpoint, remediation string) string {
	return fmt.Sprintf(`# written by the freeze container test
metrics:
  listen: %q
imds:
  enabled: true
  endpoint: %q
  resourceName: %q
  pollInterval: 1s
  idlePollInterval: 1s
pauseDetector:
  tick: 250ms
  gapThreshold: 2s
irq:
  checkInterval: 10m
  settleDelay: %s
  remediation: %s
  minSpreadRatio: 1
  cooldown: %s
  verifyTimeout: %s
kubelet:
  pinning: "off"
`, listen, endpoint, vmName, settleDelay, remediation, cooldown, verifyTimeout)
}

// freezeEvent is a Freeze for this VM as IMDS lists it.
func freezeEvent(id, status string) imdstest.Event {
	e := imdstest.Event{
		EventID: id, EventType: "Freeze", ResourceType: "VirtualMachine",
		Resources: []string{vmName}, EventStatus: status,
		Description: "Virtual machine is being paused because of a memory-preserving Live Migration operation.",
		EventSource: "Platform", DurationInSeconds: 5,
	}
	if status == "Scheduled" {
		e.NotBefore = time.Now().Add(15 * time.Minute).UTC().Format(http.TimeFormat)
	}
	return e
}

type freezeVariant struct {
	remediation string // irq.remediation
	action      string // the repair expected
	eventID     string
}

func TestNspawnFreezeResume(t *testing.T) {
	n := bootNode(t, "nk-freeze", true)
	fake := imdstest.New(clock.Real{})
	fake.UseETags(true)
	t.Cleanup(fake.Close)
	n.install(t, freezeConfigYAML(n.listen, fake.URL(), "restart"))

	// The fake refuses requests without "Metadata: true", as IMDS does.
	if resp, err := http.Get(fake.URL() + "/metadata/scheduledevents?api-version=2020-07-01"); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("fake IMDS without the Metadata header: %s, want 400", resp.Status)
	}
	refused := fake.Stats().BadRequests

	ok := t.Run("restart irqbalance", func(t *testing.T) {
		placed := n.settled(t, 2*time.Second, 15*time.Second)
		t.Logf("irqbalance placed the NIC IRQs: %v", placed)
		n.freezeResume(t, fake, freezeVariant{remediation: "restart", action: "irqbalance_restart",
			eventID: "C7061BAC-AFDC-4513-B24B-AA5F13A16123"})
	})
	if !ok {
		t.FailNow()
	}
	t.Run("irqbalance masked: spread", func(t *testing.T) {
		n.exec(t, "systemctl", "mask", "--now", irqbUnit)
		n.writeConfig(t, freezeConfigYAML(n.listen, fake.URL(), "spread"))
		n.freezeResume(t, fake, freezeVariant{remediation: "spread", action: "irq_spread",
			eventID: "4C2F1D0E-8B7A-4E61-9F3C-2D5B6A7C8E90"})
	})
	if st := fake.Stats(); st.BadRequests != refused {
		t.Errorf("the daemon sent %d requests without the Metadata header", st.BadRequests-refused)
	}
}

// freezeResume starts nodekeeper with the spread intact, walks one Freeze
// with a pause and a skew, checks what the daemon recorded, and stops it.
func (n *node) freezeResume(t *testing.T, fake *imdstest.Server, v freezeVariant) {
	if rep := n.hostCheck(); rep.Status != check.OK {
		t.Logf("before nodekeeper starts the spread is %s (%s): its first check repairs it", rep.Status, rep.Message)
	}
	from := len(n.journal(t))
	n.exec(t, "systemctl", "start", nkUnit)
	t.Cleanup(func() { _, _ = n.c.Exec(n.ctx, "systemctl", "stop", nkUnit) })
	n.waitJournal(t, from, 10*time.Second, entry{what: "started", msg: "nodekeeper started"})
	n.waitJournal(t, from, 10*time.Second, entry{what: "IMDS answering", msg: "IMDS scheduled events available"})
	if rep := n.hostCheck(); rep.Status != check.OK {
		n.waitSpread(t, verifyTimeout)
	}

	fake.SetEvents(freezeEvent(v.eventID, "Scheduled"))
	n.waitJournal(t, from, freezeWait, entry{what: "Freeze scheduled", msg: "scheduled event for this VM",
		fields: map[string]string{"EVENT_ID": v.eventID, "EVENT_STATUS": "Scheduled"}})

	skewAt := n.skew(t)
	skewed := n.masks(t)
	fake.SetEvents(freezeEvent(v.eventID, "Started"))
	n.waitJournal(t, from, freezeWait, entry{what: "Freeze started", msgID: logging.MsgScheduledEvent,
		fields: map[string]string{"EVENT_ID": v.eventID, "EVENT_STATUS": "Started"}})

	if v.remediation == "restart" {
		// The resume check comes pauseFor + settleDelay from now: irqbalance's
		// last start must then be older than irq.cooldown.
		ready := n.startedAt(t, irqbUnit) + cooldown + 300*time.Millisecond - pauseFor - settleDelay
		if wait := ready - monotonic(); wait > 0 {
			t.Logf("waiting %v: irqbalance started too recently for a restart after the pause", wait.Round(10*time.Millisecond))
			sleep(n.ctx, t, wait)
		}
	}
	if m := n.masks(t); !mapsEqual(m, skewed) {
		t.Fatalf("the skew was undone before the pause, %v after it: %v -> %v", since(skewAt), skewed, m)
	}

	// The pause: SIGSTOP to nodekeeper's main process, SIGCONT pauseFor later.
	nkPID := n.mainPID(t, nkUnit)
	pid := n.hostPID(t, nkPID)
	from = len(n.journal(t))
	signal(t, pid, syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	stopAt := time.Now()
	for nspawn.ProcState(pid) != "T" {
		if time.Since(stopAt) > time.Second {
			t.Fatalf("nodekeeper (pid %d here) not stopped: state %q", pid, nspawn.ProcState(pid))
		}
		time.Sleep(5 * time.Millisecond)
	}
	sleep(n.ctx, t, pauseFor-time.Since(stopAt))
	contAt := time.Now()
	signal(t, pid, syscall.SIGCONT)
	stopped = false
	t.Logf("nodekeeper (pid %d, %d here) stopped for %v", nkPID, pid, contAt.Sub(stopAt).Round(time.Millisecond))

	paused, _ := n.waitJournal(t, from, 10*time.Second, entry{what: "VM pause", msgID: logging.MsgVMPause,
		fields: map[string]string{"SOURCE": "clock", "EVENT_ID": v.eventID}})
	// Azure removes the event after the impact.
	fake.SetEvents()
	pauseSecs := paused[0]["PAUSE_SECONDS"]
	if s, _ := strconv.ParseFloat(pauseSecs, 64); s < pauseFor.Seconds()-0.5 || s > pauseFor.Seconds()+1 {
		t.Errorf("PAUSE_SECONDS=%s, want about %v", pauseSecs, pauseFor)
	}

	spreadAt, rep := n.waitSpread(t, settleDelay+verifyTimeout)
	seq := []entry{
		{what: "check after the resume", msgID: logging.MsgIRQSpreadProblem,
			fields: map[string]string{"CHECK": string(irq.Name), "INTERFACE": n.iface, "TRIGGER": "vm pause (clock)"}},
		{what: "repair started", msgID: logging.MsgRepairStarted,
			fields: map[string]string{"ACTION": v.action, "TRIGGER": "vm pause (clock)"}},
		{what: "repair succeeded", msgID: logging.MsgRepairSucceeded,
			fields: map[string]string{"ACTION": v.action, "RESULT": "success"}},
		{what: "pause verified", msg: "after the VM pause: spread repaired", fields: map[string]string{"OUTCOME": "repaired"}},
	}
	got, _ := n.waitJournal(t, from, verifyTimeout, seq...)
	n.waitJournal(t, from, freezeWait, entry{what: "Freeze over", msg: "scheduled event over",
		fields: map[string]string{"EVENT_ID": v.eventID, "WAS_STARTED": "true"}})

	checkAt, verifiedAt := entryTime(got[0]), entryTime(got[3])
	if checkAt.Before(contAt.Add(settleDelay - 100*time.Millisecond)) {
		t.Errorf("the check after the resume ran %v after SIGCONT, before irq.settleDelay (%v)", checkAt.Sub(contAt), settleDelay)
	}
	j := n.journal(t)
	if c := countJournal(j, from, entry{msgID: logging.MsgVMPause}); c != 1 {
		t.Errorf("%d VM pause entries since SIGSTOP, want 1:\n%s", c, formatJournal(j[from:]))
	}
	if w := rep.CPUsUsed.Len(); w != min(len(n.irqs), rep.EligibleCPUs.Len()) {
		t.Errorf("after the repair the NIC IRQs are on CPUs %s of %s", rep.CPUsUsed.List(), rep.EligibleCPUs.List())
	}

	// Targets: spreading is one write after irq.settleDelay; a restart adds
	// irqbalance's first placement (1-2 s at --interval=1) and the verify
	// loop's 1 s step.
	took := verifiedAt.Sub(contAt)
	switch v.remediation {
	case "spread":
		if took > settleDelay+time.Second {
			t.Errorf("SIGCONT -> verified %v, want at most irq.settleDelay + 1s", took)
		}
	case "restart":
		restarted, _ := n.waitJournal(t, from, time.Second, entry{what: "irqbalance restarted", msg: "irqbalance restarted"})
		t.Logf("irqbalance restarted %v after SIGCONT; its first placement showed here %v later",
			entryTime(restarted[0]).Sub(contAt).Round(time.Millisecond), spreadAt.Sub(entryTime(restarted[0])).Round(10*time.Millisecond))
	}

	metrics := []struct {
		name   string
		labels promtext.Labels
		want   float64
	}{
		{"nodekeeper_vm_pauses_total", promtext.Labels{"source": "clock"}, 1},
		{"nodekeeper_vm_pauses_total", promtext.Labels{"source": "imds"}, 0},
		{"nodekeeper_scheduled_events_total", promtext.Labels{"type": "Freeze"}, 1},
		{"nodekeeper_pause_to_verified_seconds_count", promtext.Labels{"outcome": "repaired"}, 1},
		{"nodekeeper_pause_to_verified_seconds_count", promtext.Labels{"outcome": "already_ok"}, 0},
		{"nodekeeper_pause_to_verified_seconds_count", promtext.Labels{"outcome": "failed"}, 0},
		{"nodekeeper_remediations_total", promtext.Labels{"action": v.action, "result": "success"}, 1},
		{"nodekeeper_imds_up", nil, 1},
	}
	for _, m := range metrics {
		if got, found := n.metric(t, m.name, m.labels); !found || got != m.want {
			t.Errorf("%s%v = %v (present %v), want %v", m.name, m.labels, got, found, m.want)
		}
	}
	sum, _ := n.metric(t, "nodekeeper_pause_to_verified_seconds_sum", promtext.Labels{"outcome": "repaired"})
	st := n.state(t)
	if len(st.Pauses) == 0 {
		t.Errorf("state file: no pause")
	} else if p := st.Pauses[len(st.Pauses)-1]; p.Source != "clock" || p.Outcome != "repaired" || p.EventID != v.eventID {
		t.Errorf("state file: last pause %+v, want source clock, outcome repaired, event %s", p, v.eventID)
	}
	if c := st.Checks[irq.Name]; c.Status != string(check.OK) || c.Time.Before(contAt) {
		t.Errorf("state file: irq check %s at %v (SIGCONT at %v)", c.Status, c.Time, contAt)
	}

	secs := func(s string) string { f, _ := strconv.ParseFloat(s, 64); return fmt.Sprintf("%.3fs", f) }
	t.Logf("%s: SIGCONT -> verified %v (journal; the daemon timed resume -> verified at %s, metric sum %.3fs), "+
		"SIGCONT -> check %v, SIGCONT -> spread seen here %v; irq.settleDelay %v; pause %s; NIC IRQs now %v",
		v.remediation, took.Round(time.Millisecond), secs(got[3]["SECONDS"]), sum,
		checkAt.Sub(contAt).Round(time.Millisecond), spreadAt.Sub(contAt).Round(10*time.Millisecond),
		settleDelay, secs(pauseSecs), n.masks(t))

	n.exec(t, "systemctl", "stop", nkUnit)
}
