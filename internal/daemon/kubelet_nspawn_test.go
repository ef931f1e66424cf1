package daemon_test

// kubelet's pin under a real systemd: nodekeeper, with kubelet.pinning static,
// stores AllowedCPUs= on the container's stand-in kubelet.service over D-Bus
// (a runtime drop-in) and, on hosts with v1 cgroups such as this one, moves
// kubelet's main process into a v1 cpuset of its own. The pin must survive a
// kubelet restart, `nodekeeper undo` must take it away, and turning pinning off
// with a reload must take away a pin the daemon made again.
//
// systemd-nspawn mounts the v1 controller hierarchies read-only in the
// container (only name=systemd is writable), so there the v1 cpuset cannot be
// written and the pin cannot be enforced: the test then checks that the daemon
// says so in the journal, and everything else still holds.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/kubelet"
	"github.com/nodekeeper/nodekeeper/internal/logging"
	"github.com/nodekeeper/nodekeeper/internal/systemd"
	"github.com/nodekeeper/nodekeeper/internal/testenv/promtext"
)

const (
	pinCPUs    = "1"
	pinDropin  = "/run/systemd/system.control/kubelet.service.d/50-AllowedCPUs.conf"
	pinCheck   = 2 * time.Second // irq.checkInterval: kubelet's pin is reconciled after each IRQ check
	pinTimeout = 10 * time.Second
)

func kubeletConfigYAML(listen, pinning string) string {
	return fmt.Sprintf(`# written by the kubelet container test
metrics:
  listen: %q
imds:
  enabled: false
irq:
  checkInterval: %s
  remediation: none
kubelet:
  pinning: %q
  cpus: %q
`, listen, pinCheck, pinning, pinCPUs)
}

// cgroupMount returns the options of the mount at /sys/fs/cgroup/cpuset that
// process pid of this host sees (its mount namespace), "" when there is none.
func cgroupMount(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	opts := ""
	for _, line := range strings.Split(string(b), "\n") {
		// id parent major:minor root mountpoint options …
		if f := strings.Fields(line); len(f) > 5 && f[4] == "/sys/fs/cgroup/cpuset" {
			opts = f[5] // the last mount on top wins
		}
	}
	return opts
}

// processCPUs returns the Cpus_allowed_list of the container's process pid.
func (n *node) processCPUs(t *testing.T, pid uint32) cpuset.Set {
	t.Helper()
	b, err := n.c.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			s, err := cpuset.ParseList(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	t.Fatalf("no Cpus_allowed_list for pid %d", pid)
	return cpuset.Set{}
}

func TestNspawnKubeletPin(t *testing.T) {
	n := bootNode(t, "nk-kubelet", false)
	n.install(t, kubeletConfigYAML(n.listen, "static"))
	units, err := systemd.Dial(n.ctx, n.c.BusAddress(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { units.Close() })
	t.Cleanup(func() {
		if t.Failed() { // leave no v1 cpuset of ours behind
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := n.c.Exec(ctx, "nodekeeper", "undo")
			t.Logf("nodekeeper undo at cleanup: %s %v", strings.TrimSpace(out), err)
		}
	})
	unit := func(t *testing.T) systemd.UnitState {
		t.Helper()
		st, err := units.Unit(n.ctx, kubeletUnit)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	want := cpuset.New(1)
	online := n.processCPUs(t, 1)

	var (
		enforced bool // the pin reaches kubelet's process
		next     int  // journal entries looked at so far
	)
	ok := t.Run("pinned at start", func(t *testing.T) {
		n.exec(t, "systemctl", "start", nkUnit)
		res, i := n.waitJournalAny(t, 0, pinTimeout,
			entry{what: "kubelet pinned", msgID: logging.MsgKubeletPinned, fields: map[string]string{"UNIT": kubeletUnit}},
			entry{what: "kubelet pin failed", msgID: logging.MsgKubeletPinFailed, fields: map[string]string{"UNIT": kubeletUnit}})
		next = i

		st := unit(t)
		if !st.AllowedCPUs.Equal(want) {
			t.Errorf("%s AllowedCPUs=%q over D-Bus, want %s", kubeletUnit, st.AllowedCPUs, want)
		}
		if v := n.show(t, kubeletUnit, "AllowedCPUs")["AllowedCPUs"]; v != pinCPUs {
			t.Errorf("systemctl show %s: AllowedCPUs=%q, want %s", kubeletUnit, v, pinCPUs)
		}
		if b, err := n.c.ReadFile(pinDropin); err != nil || !strings.Contains(string(b), "AllowedCPUs="+pinCPUs+"\n") {
			t.Errorf("drop-in %s: %q, %v; want AllowedCPUs=%s", pinDropin, b, err, pinCPUs)
		}
		procCPUs := n.processCPUs(t, st.MainPID)
		mount := cgroupMount(t, n.hostPID(t, n.mainPID(t, nkUnit)))
		switch res["MESSAGE_ID"] {
		case logging.MsgKubeletPinned:
			enforced = true
			t.Logf("kubelet pinned (mode %s): AllowedCPUs=%s EffectiveCPUs=%q, main process %d on %s",
				res["MODE"], st.AllowedCPUs, st.EffectiveCPUs, st.MainPID, procCPUs)
			if !procCPUs.Equal(want) {
				t.Errorf("kubelet's main process %d may run on %s, want %s", st.MainPID, procCPUs, want)
			}
		default:
			// Only a v1 cpuset the daemon cannot write excuses a failed pin.
			t.Logf("the pin is not enforced here: %q; /sys/fs/cgroup/cpuset in nodekeeper's mount namespace: %q; "+
				"kubelet's main process %d may run on %s", res["MESSAGE"], mount, st.MainPID, procCPUs)
			if mount == "" || !strings.HasPrefix(mount, "ro") {
				t.Fatalf("pin failed although the v1 cpuset is mounted %q: %s", mount, res["MESSAGE"])
			}
			if !strings.Contains(res["MESSAGE"], kubelet.CgroupName) || !strings.Contains(res["MESSAGE"], "read-only file system") {
				t.Errorf("the journal does not say the v1 cpuset %s is read-only: %q", kubelet.CgroupName, res["MESSAGE"])
			}
			if !procCPUs.Equal(online) {
				t.Errorf("kubelet's main process may run on %s, want every CPU (%s) when not enforced", procCPUs, online)
			}
			if v, _ := n.metric(t, "nodekeeper_remediations_total", promtext.Labels{"action": "kubelet_pin", "result": "failure"}); v != 1 {
				t.Errorf("nodekeeper_remediations_total{action=kubelet_pin,result=failure} = %v, want 1", v)
			}
		}
		out, err := n.c.Exec(n.ctx, "nodekeeper", "check", "kubelet", "--output", "json", "--window", "200ms")
		var rep struct{ Status, Message, Mode string }
		if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil || rep.Status == "unknown" || rep.Status == "" ||
			(enforced && rep.Status != "ok") {
			t.Errorf("nodekeeper check kubelet: %s (%v)", out, err)
		}
		t.Logf("nodekeeper check kubelet: %s: %s", rep.Status, rep.Message)
	})
	if !ok {
		t.FailNow()
	}

	t.Run("kubelet restarted", func(t *testing.T) {
		before := unit(t)
		n.exec(t, "systemctl", "restart", kubeletUnit)
		after := unit(t)
		if after.MainPID == 0 || after.MainPID == before.MainPID {
			t.Fatalf("kubelet MainPID %d -> %d: not restarted", before.MainPID, after.MainPID)
		}
		if !after.AllowedCPUs.Equal(want) {
			t.Errorf("AllowedCPUs after the restart = %q, want %s", after.AllowedCPUs, want)
		}
		if enforced {
			_, next = n.waitJournal(t, next, pinTimeout, entry{what: "pin re-applied", msg: "kubelet restarted: pin re-applied",
				fields: map[string]string{"MAIN_PID": fmt.Sprint(after.MainPID)}})
			if cpus := n.processCPUs(t, after.MainPID); !cpus.Equal(want) {
				t.Errorf("the new kubelet process %d may run on %s, want %s", after.MainPID, cpus, want)
			}
		}
		t.Logf("kubelet MainPID %d -> %d, AllowedCPUs=%s, new process on %s",
			before.MainPID, after.MainPID, after.AllowedCPUs, n.processCPUs(t, after.MainPID))
	})

	t.Run("undo", func(t *testing.T) {
		out := n.exec(t, "nodekeeper", "undo")
		t.Logf("nodekeeper undo: %s", strings.TrimSpace(out))
		st := unit(t)
		if !st.AllowedCPUs.IsEmpty() {
			t.Errorf("AllowedCPUs after undo = %q, want empty", st.AllowedCPUs)
		}
		// systemd keeps the runtime drop-in with an empty assignment (the
		// reset); what matters is that it sets no CPU.
		if b, err := n.c.ReadFile(pinDropin); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "AllowedCPUs="); ok && v != "" {
					t.Errorf("drop-in after undo still sets AllowedCPUs=%s:\n%s", v, b)
				}
			}
			t.Logf("drop-in after undo:\n%s", b)
		} else if !os.IsNotExist(err) && !strings.Contains(err.Error(), "no such file") {
			t.Error(err)
		}
		if _, err := n.c.Exec(n.ctx, "test", "!", "-e", "/sys/fs/cgroup/cpuset/"+kubelet.CgroupName); err != nil {
			t.Errorf("the v1 cpuset %s is still there after undo", kubelet.CgroupName)
		}
		if cpus := n.processCPUs(t, st.MainPID); !cpus.Equal(online) {
			t.Errorf("after undo kubelet may run on %s, want %s", cpus, online)
		}
	})

	t.Run("pinning off and reload", func(t *testing.T) {
		// The daemon pins again: at its next check when the pin works (undo
		// changed AllowedCPUs behind its back); when the pin failed it waits a
		// backoff of a minute before retrying, and a restart pins at once.
		from := len(n.journal(t))
		if enforced {
			n.waitJournal(t, from, pinCheck+pinTimeout, entry{what: "pinned again", msgID: logging.MsgKubeletPinned})
		} else {
			n.exec(t, "systemctl", "restart", nkUnit)
			n.waitJournal(t, from, pinTimeout, entry{what: "pin tried again", msgID: logging.MsgKubeletPinFailed})
		}
		if st := unit(t); !st.AllowedCPUs.Equal(want) {
			t.Fatalf("AllowedCPUs after pinning again = %q, want %s", st.AllowedCPUs, want)
		}

		n.writeConfig(t, kubeletConfigYAML(n.listen, "off"))
		from = len(n.journal(t))
		reloadAt := time.Now()
		n.exec(t, "systemctl", "reload", nkUnit)
		got, _ := n.waitJournal(t, from, pinCheck+pinTimeout,
			entry{what: "reloaded", msg: "configuration reloaded"},
			entry{what: "unpinned", msgID: logging.MsgKubeletUnpinned, fields: map[string]string{"UNIT": kubeletUnit}})
		t.Logf("reload -> %q after %v (irq.checkInterval %v)", got[1]["MESSAGE"],
			entryTime(got[1]).Sub(reloadAt).Round(time.Millisecond), pinCheck)
		if st := unit(t); !st.AllowedCPUs.IsEmpty() {
			t.Errorf("AllowedCPUs after pinning off = %q, want empty", st.AllowedCPUs)
		}
		if v, _ := n.metric(t, "nodekeeper_remediations_total", promtext.Labels{"action": "kubelet_unpin", "result": "success"}); v != 1 {
			t.Errorf("nodekeeper_remediations_total{action=kubelet_unpin,result=success} = %v, want 1", v)
		}
		if v, found := n.metric(t, "nodekeeper_kubelet_allowed_cpus", nil); !found || v != 0 {
			t.Errorf("nodekeeper_kubelet_allowed_cpus = %v (present %v), want 0", v, found)
		}
		if props := n.show(t, nkUnit, "ActiveState", "NRestarts"); props["ActiveState"] != "active" || props["NRestarts"] != "0" {
			t.Errorf("nodekeeper after the reload: %v", props)
		}
	})
}
