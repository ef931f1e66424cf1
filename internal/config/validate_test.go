package config

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// TestValidate checks the rules on values set in code: no file, no line.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"listen not host:port", func(c *Config) { c.Metrics.Listen = "9829" },
			[]string{`metrics.listen: "9829" is not host:port (e.g. 127.0.0.1:9829, :9829, [::1]:9829; "" disables the endpoint)`}},
		{"listen port 0", func(c *Config) { c.Metrics.Listen = ":0" },
			[]string{`metrics.listen: port "0" is not a number from 1 to 65535`}},
		{"listen named port", func(c *Config) { c.Metrics.Listen = "localhost:http" },
			[]string{`metrics.listen: port "http" is not a number from 1 to 65535`}},
		{"listen bad host", func(c *Config) { c.Metrics.Listen = "no host:9829" },
			[]string{`metrics.listen: "no host" is not an IP address or a host name`}},
		{"imds enabled", func(c *Config) { c.IMDS.Enabled = "on" },
			[]string{`imds.enabled: "on" is not one of auto, true, false`}},
		{"endpoint not a URL", func(c *Config) { c.IMDS.Endpoint = "169.254.169.254" },
			[]string{`imds.endpoint: "169.254.169.254" is not an http or https URL (e.g. http://169.254.169.254)`}},
		{"endpoint scheme", func(c *Config) { c.IMDS.Endpoint = "ftp://169.254.169.254" },
			[]string{`imds.endpoint: "ftp://169.254.169.254" is not an http or https URL (e.g. http://169.254.169.254)`}},
		{"endpoint path", func(c *Config) { c.IMDS.Endpoint = "http://169.254.169.254/metadata" },
			[]string{`imds.endpoint: "http://169.254.169.254/metadata" must be a base URL, without a path, query or user (e.g. http://169.254.169.254)`}},
		{"poll too fast", func(c *Config) { c.IMDS.PollInterval = 10 * time.Millisecond },
			[]string{"imds.pollInterval: must be at least 100ms, not 10ms (IMDS throttles faster polling)"}},
		{"resource name", func(c *Config) { c.IMDS.ResourceName = "vm-1\n" },
			[]string{`imds.resourceName: "vm-1\n" starts or ends with white space`}},
		{"tick too short", func(c *Config) { c.PauseDetector.Tick = time.Millisecond },
			[]string{"pauseDetector.tick: must be at least 10ms, not 1ms (shorter ticks cost CPU and timer jitter would look like pauses)"}},
		{"tick too long", func(c *Config) { c.PauseDetector.Tick = 20 * time.Second; c.PauseDetector.GapThreshold = time.Minute },
			[]string{"pauseDetector.tick: must be at most 10s, not 20s (a pause is timed to within one tick)"}},
		{"gap not above tick", func(c *Config) { c.PauseDetector.GapThreshold = 250 * time.Millisecond },
			[]string{"pauseDetector.gapThreshold: must be longer than pauseDetector.tick (1s), not 250ms (every tick would look like a pause)"}},
		{"zero durations", func(c *Config) { c.IRQ.CheckInterval = 0; c.Symptoms.Window = 0; c.Compaction.CheckInterval = 0 },
			[]string{
				"irq.checkInterval: must be at least 1s, not 0s (a check reads every NIC IRQ's affinity)",
				"compaction.checkInterval: must be at least 1s, not 0s (each check reads the free lists of every NUMA node)",
				"symptoms.window: must be at least 1s, not 0s (CPU time is counted in 10ms ticks)",
			}},
		{"negative", func(c *Config) { c.IRQ.SettleDelay = -time.Second },
			[]string{"irq.settleDelay: must not be negative, not -1s"}},
		{"too long", func(c *Config) { c.IRQ.VerifyTimeout = 200 * time.Hour },
			[]string{"irq.verifyTimeout: must be at most 168h (a week), not 200h"}},
		{"snat", func(c *Config) {
			c.SNAT.Enabled, c.SNAT.Interval, c.SNAT.AllocatedPorts = "maybe", time.Second, 70000
			c.SNAT.BackendPoolSize, c.SNAT.WarnRatio, c.SNAT.PrivateCIDRs = 1001, 0, []string{"10.224.0.0/12", "10.0.0.1"}
		}, []string{
			`snat.enabled: "maybe" is not one of auto, true, false`,
			"snat.interval: must be at least 5s, not 1s (each scan walks the whole conntrack table)",
			"snat.allocatedPorts: must be from 0 to 65535, not 70000 (0 = from snat.backendPoolSize)",
			"snat.backendPoolSize: must be from 0 to 1000, not 1001 (0 = unknown)",
			"snat.warnRatio: must be above 0 and at most 1, not 0",
			`snat.privateCIDRs[1]: "10.0.0.1" is not a CIDR prefix (e.g. 10.224.0.0/12)`,
		}},
		{"dns", func(c *Config) {
			c.DNS.ProbeName, c.DNS.Servers = "a b", []string{"10.0.0.10", "[fd00::a]:53", "10.0.0.10:0", "dns.local"}
			c.DNS.Timeout, c.DNS.Interval = time.Minute, time.Second
		}, []string{
			`dns.probeName: "a b" is not a DNS name (e.g. kubernetes.default.svc.cluster.local)`,
			`dns.servers[2]: "10.0.0.10:0" is not an IP address or IP:port (e.g. 10.0.0.10)`,
			`dns.servers[3]: "dns.local" is not an IP address or IP:port (e.g. 10.0.0.10)`,
			"dns.timeout: must be at most 30s, not 1m",
			"dns.interval: must be at least 5s, not 1s (each probe sends queries to the cluster DNS)",
		}},
		{"remediation", func(c *Config) { c.IRQ.Remediation = "Restart" },
			[]string{`irq.remediation: "Restart" is not one of restart, sighup, spread, none`}},
		{"ratio zero", func(c *Config) { c.IRQ.MinSpreadRatio = 0 },
			[]string{"irq.minSpreadRatio: must be above 0 and at most 1, not 0"}},
		{"ratio NaN", func(c *Config) { c.IRQ.MinSpreadRatio = math.NaN() },
			[]string{"irq.minSpreadRatio: must be above 0 and at most 1, not NaN"}},
		{"cooldown", func(c *Config) { c.IRQ.Cooldown = time.Second },
			[]string{"irq.cooldown: must be at least 10s, not 1s (irqbalance needs up to 10s to show a repair's effect)"}},
		{"repairs negative", func(c *Config) { c.IRQ.MaxRepairsPerHour = -1 },
			[]string{"irq.maxRepairsPerHour: must be 0 or more, not -1 (0 = never repair)"}},
		{"vf missing", func(c *Config) { c.IRQ.VFMissingAfter = time.Second },
			[]string{"irq.vfMissingAfter: must be at least 10s, not 1s (the VF is briefly removed around every host servicing)"}},
		{"globs", func(c *Config) {
			c.IRQ.Interfaces.Include = []string{"eth*", "", "a/b"}
			c.IRQ.Interfaces.Exclude = []string{"[z-a"}
		},
			[]string{
				"irq.interfaces.include[1]: is empty, which matches no interface",
				`irq.interfaces.include[2]: "a/b" contains /, which no interface name does`,
				`irq.interfaces.exclude[0]: "[z-a" is not a valid glob (e.g. eth*, enP*)`,
			}},
		{"pinning", func(c *Config) { c.Kubelet.Pinning = "on" },
			[]string{`kubelet.pinning: "on" is not one of auto, static, off`}},
		{"unit suffix", func(c *Config) { c.Kubelet.Unit = "kubelet" },
			[]string{`kubelet.unit: "kubelet" must end in .service (e.g. kubelet.service)`}},
		{"unit chars", func(c *Config) { c.Kubelet.Unit = "kube let.service" },
			[]string{`kubelet.unit: "kube let.service" is not a systemd unit name`}},
		{"static needs cpus", func(c *Config) { c.Kubelet.Pinning = PinningStatic },
			[]string{`kubelet.cpus: is required when kubelet.pinning is static (e.g. cpus: "2-7")`}},
		{"cpus list", func(c *Config) { c.Kubelet.Pinning = PinningStatic; c.Kubelet.CPUs = "0-3,x" },
			[]string{`kubelet.cpus: "0-3,x" is not a CPU list (e.g. 2-7 or 2,4-6)`}},
		{"min cpus", func(c *Config) { c.Kubelet.MinCPUs = 0 },
			[]string{"kubelet.minCPUs: must be from 1 to 8192, not 0"}},
		{"repin", func(c *Config) { c.Kubelet.RepinInterval = time.Second },
			[]string{"kubelet.repinInterval: must be at least 10s, not 1s (each check asks systemd over D-Bus)"}},
		{"mode", func(c *Config) { c.Compaction.Mode = "always" },
			[]string{`compaction.mode: "always" is not one of fragmentation, periodic, off`}},
		{"order", func(c *Config) { c.Compaction.Order = 11 },
			[]string{"compaction.order: must be from 0 to 10, not 11"}},
		{"unusable index", func(c *Config) { c.Compaction.UnusableIndexThreshold = -0.1 },
			[]string{"compaction.unusableIndexThreshold: must be from 0 to 1, not -0.1"}},
		{"safety below min", func(c *Config) { c.Compaction.SafetyInterval = 10 * time.Minute },
			[]string{"compaction.safetyInterval: must not be shorter than compaction.minInterval (30m), not 10m"}},
		{"min interval", func(c *Config) { c.Compaction.MinInterval = time.Second },
			[]string{"compaction.minInterval: must be at least 1m, not 1s (compaction stalls allocations while it runs)"}},
		{"busy threshold", func(c *Config) { c.Symptoms.SoftirqBusyThreshold = 0 },
			[]string{"symptoms.softirqBusyThreshold: must be above 0 and at most 1, not 0"}},
		{"squeeze", func(c *Config) { c.Symptoms.SqueezePerSecond = math.Inf(1) },
			[]string{"symptoms.squeezePerSecond: must be above 0, not +Inf"}},
		{"cgroups", func(c *Config) { c.Symptoms.CgroupWarn = -5 },
			[]string{"symptoms.cgroupWarn: must be 1 or more, not -5"}},
		{"kubelet system", func(c *Config) { c.Symptoms.KubeletSystemCPUWarn = 0 },
			[]string{"symptoms.kubeletSystemCPUWarn: must be above 0, not 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(&c)
			err := c.Validate()
			want := strings.Join(tt.want, "\n")
			if err == nil || err.Error() != want {
				t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	for name, change := range map[string]func(c *Config){
		"listen off":      func(c *Config) { c.Metrics.Listen = "" },
		"listen all":      func(c *Config) { c.Metrics.Listen = ":9829" },
		"listen v6":       func(c *Config) { c.Metrics.Listen = "[fe80::1%eth0]:9829" },
		"listen name":     func(c *Config) { c.Metrics.Listen = "localhost:9829" },
		"https endpoint":  func(c *Config) { c.IMDS.Endpoint = "https://127.0.0.1:8080/" },
		"no repairs":      func(c *Config) { c.IRQ.MaxRepairsPerHour = 0 },
		"static":          func(c *Config) { c.Kubelet.Pinning = PinningStatic; c.Kubelet.CPUs = "2-7" },
		"cpus while auto": func(c *Config) { c.Kubelet.CPUs = "1" },
		"floors": func(c *Config) {
			c.IMDS.PollInterval = 100 * time.Millisecond
			c.PauseDetector.Tick = 10 * time.Millisecond
		},
		"tick ceiling": func(c *Config) {
			c.PauseDetector.Tick = 10 * time.Second
			c.PauseDetector.GapThreshold = 11 * time.Second
		},
		"thresholds at ends": func(c *Config) { c.Compaction.UnusableIndexThreshold = 0; c.IRQ.MinSpreadRatio = 1 },
		"safety equals min":  func(c *Config) { c.Compaction.SafetyInterval = 30 * time.Minute },
		"empty lists":        func(c *Config) { c.IRQ.Interfaces = Interfaces{} },
		"order 0 and 10":     func(c *Config) { c.Compaction.Order = 10 },
	} {
		c := Default()
		change(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestValidateAfterChangeInCode: a loaded value changed in code is no longer
// reported at the file's line, but one left alone still is.
func TestValidateAfterChangeInCode(t *testing.T) {
	c, err := decodeString(t, "irq:\n  cooldown: 1m\n  checkInterval: 5s\n")
	if err != nil {
		t.Fatal(err)
	}
	c.IRQ.Cooldown = time.Second
	c.IRQ.CheckInterval = 5 * time.Second // the same value: still the file's
	c.IRQ.MinSpreadRatio = 2
	err = c.Validate()
	want := "irq.minSpreadRatio: must be above 0 and at most 1, not 2\n" +
		"irq.cooldown: must be at least 10s, not 1s (irqbalance needs up to 10s to show a repair's effect)"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
	c.IRQ.CheckInterval = 0
	c.IRQ.Cooldown = time.Minute // back to the file's value
	c.IRQ.MinSpreadRatio = 0.5
	err = c.Validate()
	want = "irq.checkInterval: must be at least 1s, not 0s (a check reads every NIC IRQ's affinity)"
	if err == nil || err.Error() != want {
		t.Errorf("Validate() =\n%v\nwant\n%s", err, want)
	}
}

func TestValidateErrorsAreFieldErrors(t *testing.T) {
	c := Default()
	c.IRQ.Remediation = "x"
	c.Compaction.Order = -1
	var fes []*FieldError
	for _, e := range c.Validate().(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is a %T", e, e)
		}
		fes = append(fes, fe)
	}
	if len(fes) != 2 || fes[0].Field != "irq.remediation" || fes[1].Field != "compaction.order" || fes[0].File != "" || fes[0].Line != 0 {
		t.Errorf("errors = %+v %+v", fes[0], fes[1])
	}
}

func TestFieldErrorText(t *testing.T) {
	for _, tt := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "a.yaml", Line: 3, Field: "irq.cooldown", Reason: "bad"}, "a.yaml:3: irq.cooldown: bad"},
		{FieldError{File: "a.yaml", Field: "irq.cooldown", Reason: "bad"}, "a.yaml: irq.cooldown: bad"},
		{FieldError{File: "a.yaml", Line: 3, Reason: "bad"}, "a.yaml:3: bad"},
		{FieldError{Field: "irq.cooldown", Reason: "bad"}, "irq.cooldown: bad"},
		{FieldError{Line: 3, Field: "irq.cooldown", Reason: "bad"}, "irq.cooldown: bad"},
	} {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
}

// TestValidateZero: the zero Config is invalid in many ways, and says so
// without panicking.
func TestValidateZero(t *testing.T) {
	err := Config{}.Validate()
	if err == nil {
		t.Fatal("Config{}.Validate() = nil")
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if strings.HasPrefix(line, ":") || strings.Contains(line, ".yaml") {
			t.Errorf("unexpected position in %q", line)
		}
	}
}

func TestIdlePollNotBelowPoll(t *testing.T) {
	c := Default()
	c.IMDS.PollInterval, c.IMDS.IdlePoll = 2*time.Second, time.Second
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "imds.idlePollInterval: must be at least imds.pollInterval (2s), not 1s") {
		t.Errorf("got %v", err)
	}
}
