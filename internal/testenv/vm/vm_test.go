package vm

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// smokeScript is the smoke test's payload. It prints key=value lines.
var smokeScript = fmt.Sprintf(`#!/bin/bash
set -u
echo "nproc=$(nproc)"
awk '$NF ~ /^virtio[0-9]+-(input|output)\.[0-9]+$/ { print "irq=" $NF }' /proc/interrupts
echo "controllers=$(cat /sys/fs/cgroup/cgroup.controllers)"
echo "system=$(systemctl is-system-running)"
systemctl set-property --runtime kubelet.service AllowedCPUs=2-3 || echo "set-property failed: $?"
pid=$(systemctl show --property=MainPID --value kubelet.service)
echo "kubelet_cpus=$(awk '/^Cpus_allowed_list:/ { print $2 }' /proc/$pid/status)"
echo "kubelet_effective=$(systemctl show --property=EffectiveCPUs --value kubelet.service)"
# Real receive interrupts: ARP and a TCP reset from tap0, the VM's other end in
# its own network namespace.
ip addr add %[1]s/%[3]d dev %[4]s && ip link set %[4]s up
timeout 10 bash -c 'exec 3<>/dev/tcp/%[2]s/9' 2>/dev/null
echo "rx_packets=$(cat /sys/class/net/%[4]s/statistics/rx_packets)"
echo "hello from $(uname -r)" >"$OUTPUT_DIR/hello.txt"
`, GuestAddr, HostAddr, PrefixLen, GuestNIC)

// TestSmoke boots 4 vCPUs with a 2-queue-pair NIC and checks what later tests
// rely on: the vCPU count, the NIC's queue IRQs, cgroup2 with cpuset, and an
// AllowedCPUs= that the kernel enforces on kubelet's main process.
func TestSmoke(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	res, err := Run(t, ctx, Options{
		CPUs:      4,
		NICQueues: 2,
		OutputMiB: 8,
		Payload:   map[string][]byte{"run.sh": []byte(smokeScript)},
		Timeout:   6 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("payload output:\n%s", res.Output)
	if res.ExitCode != 0 {
		t.Errorf("payload exit code %d, want 0", res.ExitCode)
	}

	kv := map[string][]string{}
	for _, line := range strings.Split(res.Output, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = append(kv[k], v)
		}
	}
	one := func(k string) string {
		if len(kv[k]) != 1 {
			t.Errorf("%s: got %q, want one value", k, kv[k])
			return ""
		}
		return kv[k][0]
	}

	if got := one("nproc"); got != "4" {
		t.Errorf("nproc = %q, want 4", got)
	}
	var queues []string
	prefix := regexp.MustCompile(`^virtio[0-9]+-`)
	for _, name := range kv["irq"] {
		queues = append(queues, prefix.ReplaceAllString(name, ""))
	}
	slices.Sort(queues)
	if want := []string{"input.0", "input.1", "output.0", "output.1"}; !slices.Equal(queues, want) {
		t.Errorf("NIC queue IRQs %q (%q), want %q", queues, kv["irq"], want)
	}
	if got := strings.Fields(one("controllers")); !slices.Contains(got, "cpuset") {
		t.Errorf("cgroup2 controllers %q lack cpuset", got)
	}
	if got := one("system"); got != "running" {
		t.Logf("note: system state %q when the payload ran", got)
	}
	if got := one("kubelet_cpus"); got != "2-3" {
		t.Errorf("kubelet's Cpus_allowed_list = %q, want 2-3", got)
	}
	if got := one("kubelet_effective"); got != "2-3" {
		t.Errorf("kubelet.service EffectiveCPUs = %q, want 2-3", got)
	}
	if got := one("rx_packets"); got == "" || got == "0" {
		t.Errorf("rx_packets = %q: nothing came back from %s over the tap", got, HostAddr)
	}
	if got, want := string(res.Files["hello.txt"]), "hello from "; !strings.HasPrefix(got, want) {
		t.Errorf("output file hello.txt = %q, want %q…", got, want)
	}
	if res.BootSeconds <= 0 || res.Duration <= 0 {
		t.Errorf("BootSeconds %v, Duration %v: want both set", res.BootSeconds, res.Duration)
	}
	t.Logf("timings: payload started %.1f s after QEMU (guest uptime %.1f s); VM gone after %.1f s",
		res.BootSeconds, res.GuestUptime, res.Duration.Seconds())
}

func TestSplitOutput(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		out    string
		uptime float64
		exited bool
		code   int
	}{
		{"", "", -1, false, -1},
		{"PAYLOAD-START uptime=17.25\n", "", 17.25, false, -1},
		{"PAYLOAD-START uptime=17.25\na\nb\n", "a\nb\n", 17.25, false, -1},
		{"PAYLOAD-START uptime=1.5\na\nPAYLOAD-EXIT 3\n", "a\n", 1.5, true, 3},
		// A half-written marker line is not the marker yet.
		{"PAYLOAD-START uptime=1.5\na\nPAYLOAD-EXIT 1", "a\nPAYLOAD-EXIT 1", 1.5, false, -1},
		// The payload printing the marker itself: the last one wins.
		{"PAYLOAD-START uptime=2\nPAYLOAD-EXIT 9\nx\r\nPAYLOAD-EXIT 0\r\n", "PAYLOAD-EXIT 9\nx\n", 2, true, 0},
		// The runner's own failure before the start.
		{"nodekeeper-test-payload: no disk labelled payload after 30 s\nPAYLOAD-EXIT 125\n",
			"nodekeeper-test-payload: no disk labelled payload after 30 s\n", -1, true, 125},
	} {
		out, uptime, exited, code := splitOutput(tc.raw)
		if out != tc.out || uptime != tc.uptime || exited != tc.exited || code != tc.code {
			t.Errorf("splitOutput(%q) = %q, %v, %v, %d; want %q, %v, %v, %d",
				tc.raw, out, uptime, exited, code, tc.out, tc.uptime, tc.exited, tc.code)
		}
	}
}

func TestQEMUArgs(t *testing.T) {
	img := Image{Kernel: "/i/vmlinuz", Initrd: "/i/initrd.img", Disk: "/i/root,fs.img"}
	opts := Options{NICQueues: 4, OutputMiB: 1, Payload: map[string][]byte{"run.sh": nil}}
	if err := opts.fill(); err != nil {
		t.Fatal(err)
	}
	args := strings.Join(qemuArgs(img, opts, "/t/p.img", "/t/o.img", "/t/c.log", "/t/o.log"), " ")
	for _, want := range []string{
		"-nodefaults", "-accel tcg,thread=multi -cpu max", "-smp 4 -m 2048",
		"file=/i/root,,fs.img,if=virtio,format=raw,snapshot=on",
		"file=/t/p.img,if=virtio,format=raw,readonly=on",
		"file=/t/o.img,if=virtio,format=raw,cache=unsafe",
		"-netdev tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=off,queues=4",
		"-device virtio-net-pci,netdev=n0,mq=on,vectors=10",
		"-serial file:/t/c.log -serial file:/t/o.log",
		"nodekeeper.payload_timeout=480 nodekeeper.output=1",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("QEMU arguments lack %q:\n%s", want, args)
		}
	}
	if !strings.Contains(netnsScript(4), "mode tap multi_queue") || strings.Contains(netnsScript(1), "multi_queue") {
		t.Errorf("tap0 must be multi-queue exactly when QEMU asks for more than one queue:\n%s\n%s",
			netnsScript(4), netnsScript(1))
	}
}

func TestOptionsFill(t *testing.T) {
	run := map[string][]byte{"run.sh": nil}
	for _, tc := range []struct {
		opts Options
		ok   bool
	}{
		{Options{Payload: run}, true},
		{Options{}, false},
		{Options{Payload: map[string][]byte{"run.sh": nil, "bin/x": nil}}, true},
		{Options{Payload: map[string][]byte{"run.sh": nil, "../x": nil}}, false},
		{Options{Payload: map[string][]byte{"run.sh": nil, "/x": nil}}, false},
		{Options{Payload: map[string][]byte{"run.sh": nil, "a//b": nil}}, false},
		{Options{Payload: run, NICQueues: 9}, false},
		{Options{Payload: run, CPUs: -1}, false},
		{Options{Payload: run, KernelArgs: []string{"a b"}}, false},
	} {
		err := tc.opts.fill()
		if (err == nil) != tc.ok {
			t.Errorf("fill(%+v) = %v, want ok=%v", tc.opts, err, tc.ok)
		}
	}
	o := Options{Payload: run}
	_ = o.fill()
	if o.CPUs != 4 || o.MemoryMiB != 2048 || o.Timeout != 10*time.Minute {
		t.Errorf("defaults: %+v", o)
	}
	if got := payloadTimeout(10 * time.Minute); got != 8*time.Minute {
		t.Errorf("payloadTimeout(10m) = %v, want 8m", got)
	}
	if got := payloadTimeout(time.Minute); got != 30*time.Second {
		t.Errorf("payloadTimeout(1m) = %v, want 30s", got)
	}
}
