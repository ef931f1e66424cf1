package vm

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
		Script:    "testdata/smoke.sh",
		Env: map[string]string{"NIC": GuestNIC, "GUEST_ADDR": GuestAddr, "HOST_ADDR": HostAddr,
			"PREFIX_LEN": strconv.Itoa(PrefixLen)},
		Timeout: 6 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("payload output:\n%s", res.Output)
	o := ParseOutput(res.Output)
	o.Report(t, res.ExitCode)
	one := func(k string) string { return o.One(t, k) }

	if got := one("nproc"); got != "4" {
		t.Errorf("nproc = %q, want 4", got)
	}
	var queues []string
	prefix := regexp.MustCompile(`^virtio[0-9]+-`)
	for _, name := range o.Values("irq") {
		queues = append(queues, prefix.ReplaceAllString(name, ""))
	}
	slices.Sort(queues)
	if want := []string{"input.0", "input.1", "output.0", "output.1"}; !slices.Equal(queues, want) {
		t.Errorf("NIC queue IRQs %q (%q), want %q", queues, o.Values("irq"), want)
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
	if b := o.Block("multi"); strings.TrimSpace(b) != "a=1\nb=2" || o.Values("a") != nil {
		t.Errorf("block multi = %q, results a = %q: want the block's lines only in the block", b, o.Values("a"))
	}
	o.Want(t, "problems", "0")
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
	c := netnsCommand(4, []string{"-smp", "4"})
	if !slices.Equal(c[:4], []string{"unshare", "--net", "--", "/bin/sh"}) ||
		!slices.Equal(c[len(c)-5:], []string{"4", "10.213.0.1/24", qemuBinary, "-smp", "4"}) {
		t.Errorf("netns command %q: want unshare --net -- /bin/sh … QUEUES ADDR QEMU ARGS", c)
	}

	// The tap is multi-queue exactly when QEMU asks for more than one queue
	// (IFF_MULTI_QUEUE must match); netns.sh run with "ip" recording its
	// arguments.
	bin := t.TempDir()
	log := filepath.Join(bin, "log")
	if err := os.WriteFile(filepath.Join(bin, "ip"), []byte("#!/bin/sh\necho \"ip $*\" >>"+log+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		queues int
		tuntap string
	}{{1, "ip tuntap add dev tap0 mode tap\n"}, {4, "ip tuntap add dev tap0 mode tap multi_queue\n"}} {
		os.Remove(log)
		c := netnsCommand(tc.queues, []string{"echo", "qemu"})
		i := slices.Index(c, qemuBinary)
		c = slices.Delete(c, i, i+1)        // it execs "echo qemu" instead
		cmd := exec.Command(c[3], c[4:]...) // without unshare --net --
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		calls, _ := os.ReadFile(log)
		if err != nil || string(out) != "qemu\n" || !strings.Contains(string(calls), tc.tuntap) ||
			!strings.Contains(string(calls), "ip addr add 10.213.0.1/24 dev tap0\n") {
			t.Errorf("netns.sh with %d queues: %v, output %q, ip calls:\n%s\nwant %q", tc.queues, err, out, calls, tc.tuntap)
		}
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
		{Options{Script: "s.sh"}, true},
		{Options{Script: "s.sh", Env: map[string]string{"NIC": "eth0", "A_1": ""}}, true},
		{Options{Payload: run, Env: map[string]string{"NIC": "eth0"}}, false},
		{Options{Script: "s.sh", Payload: run}, false},
		{Options{Script: "s.sh", Payload: map[string][]byte{"lib.sh": nil}}, false},
		{Options{Script: "s.sh", Env: map[string]string{"nic": "eth0"}}, false},
		{Options{Script: "s.sh", Env: map[string]string{"A": "two\nlines"}}, false},
	} {
		err := tc.opts.fill()
		if (err == nil) != tc.ok {
			t.Errorf("fill(%+v) = %v, want ok=%v", tc.opts, err, tc.ok)
		}
	}
	o := Options{Payload: run}
	_ = o.fill()
	if o.CPUs != 4 || o.MemoryMiB != 2048 || o.Timeout != 10*time.Minute || o.BootTimeout != 2*time.Minute {
		t.Errorf("defaults: %+v", o)
	}
	// A hung boot must be seen before the run's deadline, or it is never
	// booted again (CI once lost a 4 min run to a 4 min boot timeout).
	for _, c := range []struct{ timeout, boot time.Duration }{{time.Minute, 30 * time.Second}, {4 * time.Minute, 2 * time.Minute}} {
		o = Options{Payload: run, Timeout: c.timeout}
		if err := o.fill(); err != nil || o.BootTimeout != c.boot {
			t.Errorf("Timeout %v: BootTimeout %v (%v), want %v", c.timeout, o.BootTimeout, err, c.boot)
		}
	}
	o = Options{Payload: run, Timeout: time.Minute, BootTimeout: 2 * time.Minute}
	if err := o.fill(); err == nil {
		t.Errorf("BootTimeout past Timeout accepted")
	}
	if got := payloadTimeout(10 * time.Minute); got != 8*time.Minute {
		t.Errorf("payloadTimeout(10m) = %v, want 8m", got)
	}
	if got := payloadTimeout(time.Minute); got != 30*time.Second {
		t.Errorf("payloadTimeout(1m) = %v, want 30s", got)
	}
}

func TestParseOutput(t *testing.T) {
	out := "chatter without a key\nnproc=4\nirq=a\r\nirq=b\nkey with blank=x\n=nokey\n" +
		"--- begin journal\nfail=inside a block\nline 2\n--- end journal\n" +
		"problem=one\nempty=\n--- begin json\n{\"a\": 1}\n"
	o := ParseOutput(out)
	if got := o.Values("irq"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("irq = %q, want a, b", got)
	}
	o.Want(t, "nproc", "4", "empty", "")
	if o.Values("key with blank") != nil || o.Values("") != nil || o.Values("fail") != nil {
		t.Errorf("a line that is no result was read as one: %v", o.kv)
	}
	if got := o.Block("journal"); got != "fail=inside a block\nline 2\n" {
		t.Errorf("block journal = %q", got)
	}
	if got := o.Block("json"); got != "{\"a\": 1}\n" {
		t.Errorf("block json (no end line) = %q", got)
	}
	if o.Block("none") != "" {
		t.Errorf("a block never printed is not empty")
	}
	if got := o.Float(t, "nproc"); got != 4 {
		t.Errorf("Float(nproc) = %v", got)
	}
}

func TestScriptPayload(t *testing.T) {
	script := filepath.Join(t.TempDir(), "s.sh")
	if err := os.WriteFile(script, []byte("#!/bin/bash\necho hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{Script: script, Env: map[string]string{"B": "it's a \"value\" $(x)", "A": "1"},
		Payload: map[string][]byte{"data": []byte("d")}}
	if err := o.fill(); err != nil {
		t.Fatal(err)
	}
	files, err := o.payload()
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, []string{"data", "lib.sh", "main.sh", "params.env", "run.sh"}) {
		t.Errorf("payload files %q", got)
	}
	if string(files["main.sh"]) != "#!/bin/bash\necho hi\n" || !strings.HasPrefix(string(files["run.sh"]), "#!/bin/bash\n") {
		t.Errorf("main.sh %q, run.sh %q", files["main.sh"], files["run.sh"])
	}
	want := "A=1\nB=it's a \"value\" $(x)\n"
	if string(files["params.env"]) != want {
		t.Errorf("params.env = %q, want %q", files["params.env"], want)
	}
	if _, ok := o.Payload["main.sh"]; ok {
		t.Errorf("payload() changed Options.Payload")
	}

	// The runner exports the values as they are, without interpreting them.
	dir := t.TempDir()
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "main.sh"), []byte("printf '%s|%s' \"$A\" \"$B\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "run.sh")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "1|it's a \"value\" $(x)" {
		t.Errorf("run.sh: %q, %v; want the parameters as given", out, err)
	}
}

func TestWatchEndsABootThatHangs(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "output.log")
	done := make(chan struct{})
	res := &Result{ExitCode: -1}
	err := watch(t.Context(), res, time.Now(), 300*time.Millisecond, log, done)
	if !errors.Is(err, errNoBoot) {
		t.Fatalf("no output at all: err %v, want errNoBoot", err)
	}
	// A payload that started in time is not cut by the boot deadline.
	if err := os.WriteFile(log, []byte(startMarker+" uptime=12.5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	res = &Result{ExitCode: -1}
	err = watch(ctx, res, time.Now(), 300*time.Millisecond, log, done)
	if errors.Is(err, errNoBoot) || err == nil || res.GuestUptime != 12.5 {
		t.Fatalf("started payload: err %v, uptime %v; want the run's own deadline, uptime 12.5", err, res.GuestUptime)
	}
}

func TestKernelAlarms(t *testing.T) {
	console := "[    1.0] Linux version 6.1\n" +
		"[  243.1] INFO: task jbd2/vda-8:120 blocked for more than 120 seconds.\n" +
		"[  243.1]       Not tainted 6.1.0-28-cloud-amd64 #1\n" +
		"[  243.2] Call Trace:\n" +
		"[  243.2]  <TASK>\n" +
		"[  300.0] rcu: INFO: rcu_sched self-detected stall on CPU\n" +
		"[  300.1]  ret_from_fork+0x22/0x30\n"
	got := kernelAlarms(console)
	for _, want := range []string{"blocked for more than 120 seconds", "Not tainted", "rcu_sched self-detected stall"} {
		if !strings.Contains(got, want) {
			t.Errorf("kernelAlarms lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "Linux version") || strings.Count(got, "Call Trace:") != 0 {
		t.Errorf("kernelAlarms kept ordinary lines or a second Call Trace:\n%s", got)
	}
	if got := kernelAlarms("[ 1.0] all fine\n"); got != "(none)\n" {
		t.Errorf("quiet console: %q", got)
	}
}

// TestRunBootsAgainWhenTheGuestHangs gives a real guest too little time to
// boot: Run ends QEMU, boots once more, and then reports errNoBoot with the
// console of the second boot.
func TestRunBootsAgainWhenTheGuestHangs(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	res, err := Run(t, ctx, Options{
		CPUs:        1,
		Payload:     map[string][]byte{"run.sh": []byte("#!/bin/sh\necho never\n")},
		Timeout:     time.Minute,
		BootTimeout: 2 * time.Second,
	})
	if !errors.Is(err, errNoBoot) {
		t.Fatalf("err %v, want errNoBoot", err)
	}
	if res == nil || res.Boots != 2 || res.BootSeconds != 0 {
		t.Fatalf("result %+v: want 2 boots, none of which started the payload", res)
	}
	if !strings.Contains(res.Console, "Linux version") && !strings.Contains(res.Console, "QEMU") {
		t.Errorf("console of the second boot is empty: %q", res.Console)
	}
}
