package ctdrops_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/nodekeeper/nodekeeper/internal/ctdrops"
	"github.com/nodekeeper/nodekeeper/internal/testenv/hostlock"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
	"github.com/nodekeeper/nodekeeper/internal/testenv/nkbin"
)

// The conntrack lab: a "node" namespace that tracks its flows (an nftables
// rule with ct state) and a "peer" namespace, joined by veth; a UDP flood
// from the node to the peer fills the node's table against a lowered
// nf_conntrack_max, and `nodekeeper check conntrack` runs in the node
// namespace as on a node.
const (
	labNode = "10.0.7.1"
	labPeer = "10.0.7.2"
	// labMax is the lowered nf_conntrack_max. The limit is global (the
	// child namespaces' copy is read-only) and counts per namespace, so it
	// must stay above what other tests' namespaces hold at once.
	labMax = 1024
)

type ctLab struct {
	t  *testing.T
	id string
}

func (l *ctLab) ns(role string) string { return "nkc-" + l.id + "-" + role }

func (l *ctLab) run(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (l *ctLab) in(role string, args ...string) string {
	l.t.Helper()
	return l.run(append([]string{"ip", "netns", "exec", l.ns(role)}, args...)...)
}

func newCTLab(t *testing.T) *ctLab {
	layer.Root(t)
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			layer.Unavailable(t, "root", "%s not installed (scripts/test-deps.sh installs it)", tool)
		}
	}
	if _, err := os.Stat("/proc/sys/net/netfilter/nf_conntrack_max"); err != nil {
		layer.Unavailable(t, "root", "this kernel has no conntrack (%v)", err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &ctLab{t: t, id: hex.EncodeToString(b)}
	for _, role := range []string{"node", "peer"} {
		name := l.ns(role)
		l.run("ip", "netns", "add", name)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	}
	l.run("ip", "link", "add", "eth0", "netns", l.ns("node"), "type", "veth", "peer", "name", "eth0", "netns", l.ns("peer"))
	for role, addr := range map[string]string{"node": labNode, "peer": labPeer} {
		l.in(role, "ip", "addr", "add", addr+"/24", "dev", "eth0")
		l.in(role, "ip", "link", "set", "eth0", "up")
		l.in(role, "ip", "link", "set", "lo", "up")
	}
	// Conntrack runs in a namespace only where a rule needs it.
	l.in("node", "nft", "add table inet lab; add chain inet lab out { type filter hook output priority 0; }; add rule inet lab out ct state new counter accept")
	return l
}

// lowerMax sets the global nf_conntrack_max to n until the test ends, under
// a host-wide lock so that no two tests fight over it.
func (l *ctLab) lowerMax(n int) (restore func()) {
	l.t.Helper()
	unlock, err := hostlock.Acquire(l.t.Context(), "nf_conntrack_max", 50*time.Millisecond)
	if err != nil {
		l.t.Fatal(err)
	}
	const path = "/proc/sys/net/netfilter/nf_conntrack_max"
	old, err := os.ReadFile(path)
	if err != nil {
		unlock()
		l.t.Fatal(err)
	}
	done := false
	restore = func() {
		if done {
			return
		}
		done = true
		if err := os.WriteFile(path, old, 0o644); err != nil {
			l.t.Errorf("restore nf_conntrack_max to %s: %v", strings.TrimSpace(string(old)), err)
		}
		unlock()
	}
	l.t.Cleanup(restore)
	if err := os.WriteFile(path, []byte(fmt.Sprint(n)), 0o644); err != nil {
		restore()
		l.t.Fatal(err)
	}
	return restore
}

// flood sends one datagram from each of n fresh sockets in the node
// namespace to the peer: n new conntrack entries, unreplied.
func (l *ctLab) flood(n int) {
	l.t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the thread stays in the namespace: it is not unlocked
		h, err := netns.GetFromName(l.ns("node"))
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		for i := range n {
			c, err := net.Dial("udp4", net.JoinHostPort(labPeer, strconv.Itoa(10000+i%20000)))
			if err != nil {
				errc <- err
				return
			}
			_, _ = c.Write([]byte("x")) // a drop by conntrack is what the test wants
			c.Close()
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		l.t.Fatal(err)
	}
}

type checkJSON struct {
	ctdrops.Report
}

// check runs `nodekeeper check conntrack` in the node namespace; during
// runs while its window is open.
func (l *ctLab) check(bin string, window time.Duration, during func()) (int, checkJSON) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.ns("node"), bin, "check", "conntrack", "--output", "json",
		"--window", window.String(), "--config", "/nonexistent/config.yaml")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	if during != nil {
		time.Sleep(window / 4) // the first sample is taken
		during()
	}
	err := cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	var r checkJSON
	if jerr := json.Unmarshal([]byte(out.String()), &r); jerr != nil {
		l.t.Fatalf("check conntrack: %v (exit %d): %v\n%s", err, code, jerr, out.String())
	}
	return code, r
}

func TestLabCheckConntrackFullTable(t *testing.T) {
	l := newCTLab(t)
	bin := nkbin.Build(t)

	code, r := l.check(bin, time.Second, nil)
	if code != 0 || r.Status != "ok" || r.Source != "netlink" {
		t.Fatalf("before the flood: exit %d, %+v", code, r)
	}
	restore := l.lowerMax(labMax)
	code, r = l.check(bin, 3*time.Second, func() { l.flood(3 * labMax) })
	t.Logf("during the flood: exit %d: %s; entries %d of %d, rates %+v", code, r.Message, r.Entries, r.Max, r.Rates)
	if code != 1 || r.Status != "problem" {
		t.Errorf("during the flood: exit %d %s %q, want problem", code, r.Status, r.Message)
	}
	if r.Rates.Drop+r.Rates.EarlyDrop <= 0 {
		t.Errorf("during the flood: drop %v/s, early_drop %v/s: want a rate above 0", r.Rates.Drop, r.Rates.EarlyDrop)
	}
	if r.Max != labMax || r.Entries < labMax*9/10 {
		t.Errorf("during the flood: %d entries of %d, want the table nearly full of %d", r.Entries, r.Max, labMax)
	}
	restore()
	code, r = l.check(bin, time.Second, nil)
	t.Logf("after the flood: exit %d: %s", code, r.Message)
	if code != 0 || r.Status != "ok" || r.Rates.Drop != 0 || r.Rates.EarlyDrop != 0 {
		t.Errorf("after the flood: exit %d %s %q (rates %+v), want ok", code, r.Status, r.Message, r.Rates)
	}
}

// TestKernelLogTableFullLine writes the kernel's table-full line into the
// real kernel log (root may) and reads it back through Kmsg, from where
// Kmsg was opened.
func TestKernelLogTableFullLine(t *testing.T) {
	layer.Root(t)
	k, err := ctdrops.OpenKmsg("/dev/kmsg")
	if err != nil {
		layer.Unavailable(t, "root", "/dev/kmsg: %v", err)
	}
	defer k.Close()
	before := k.TableFull()
	if before != 0 {
		t.Fatalf("%d table-full lines counted before any was written: Kmsg must start at the log's end", before)
	}
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, line := range []string{"<4>nf_conntrack: table full, dropping packet", "<6>nodekeeper test: an ordinary line",
		"<4>nf_conntrack: nf_conntrack: table full, dropping packet"} {
		if _, err := f.WriteString(line + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	if got := k.TableFull(); got != 2 {
		t.Errorf("counted %d table-full lines, want 2", got)
	}
	if got := k.TableFull(); got != 2 {
		t.Errorf("a second read counted again: %d", got)
	}
}
