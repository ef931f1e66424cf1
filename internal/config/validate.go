package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
)

// FieldError is one problem with the configuration: a key with a bad value,
// an unknown key, or a file that cannot be read or parsed.
type FieldError struct {
	File   string // the file the value was read from; "" when it was not read from a file
	Line   int    // 1-based line in File; 0 when unknown
	Field  string // YAML path of the key, e.g. "irq.minSpreadRatio"; "" for a problem with the file as a whole
	Reason string // what is wrong, in plain words

	err error // the underlying error, e.g. from opening the file
}

// Error formats e as "FILE:LINE: field: reason", leaving out the parts that
// are unknown.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap returns the underlying error, if any (e.g. fs.ErrNotExist).
func (e *FieldError) Unwrap() error { return e.err }

// maxInterval is the ceiling of every duration. Nothing nodekeeper does is
// useful less than once a week, and the ceiling keeps arithmetic on intervals
// (twice an interval, an interval plus a deadline) far from overflowing.
const maxInterval = 7 * 24 * time.Hour

// Validate checks every value and returns all problems joined (errors.Join of
// *FieldError), or nil. A value read from a file is reported with that file
// and line.
func (c Config) Validate() error {
	v := &validator{c: c}

	if c.Metrics.Listen != "" {
		v.check("metrics.listen", listenProblem(c.Metrics.Listen))
	}

	v.oneOf("imds.enabled", c.IMDS.Enabled)
	v.check("imds.endpoint", endpointProblem(c.IMDS.Endpoint))
	// IMDS throttles a VM that sends more than a few requests a second.
	v.duration("imds.pollInterval", c.IMDS.PollInterval, 100*time.Millisecond, "IMDS throttles faster polling")
	v.duration("imds.idlePollInterval", c.IMDS.IdlePoll, 100*time.Millisecond, "IMDS throttles faster polling")
	if c.IMDS.IdlePoll > 0 && c.IMDS.IdlePoll < c.IMDS.PollInterval {
		v.fail("imds.idlePollInterval", fmt.Sprintf("must be at least imds.pollInterval (%s), not %s",
			formatDuration(c.IMDS.PollInterval), formatDuration(c.IMDS.IdlePoll)))
	}
	v.check("imds.resourceName", textProblem(c.IMDS.ResourceName))

	// The pause detector sleeps one tick at a time. Below 10ms it costs CPU and
	// scheduling jitter alone looks like a gap; above 10s it is too coarse to
	// time a resume.
	v.duration("pauseDetector.tick", c.PauseDetector.Tick, 10*time.Millisecond, "shorter ticks cost CPU and timer jitter would look like pauses")
	if t := c.PauseDetector.Tick; t > 10*time.Second {
		v.fail("pauseDetector.tick", fmt.Sprintf("must be at most 10s, not %s (a pause is timed to within one tick)", formatDuration(t)))
	}
	if g, t := c.PauseDetector.GapThreshold, c.PauseDetector.Tick; g <= t {
		const why = "every tick would look like a pause"
		v.order("pauseDetector.gapThreshold", "pauseDetector.tick",
			fmt.Sprintf("must be longer than pauseDetector.tick (%s), not %s (%s)", formatDuration(t), formatDuration(g), why),
			fmt.Sprintf("must be shorter than pauseDetector.gapThreshold (%s), not %s (%s)", formatDuration(g), formatDuration(t), why))
	} else {
		v.duration("pauseDetector.gapThreshold", g, 0, "")
	}

	// A check reads every NIC IRQ's affinity; once a second is plenty, and the
	// triggers (resume, NIC change, symptoms) check sooner when needed.
	v.duration("irq.checkInterval", c.IRQ.CheckInterval, time.Second, "a check reads every NIC IRQ's affinity")
	v.duration("irq.settleDelay", c.IRQ.SettleDelay, 0, "")
	v.oneOf("irq.remediation", c.IRQ.Remediation)
	v.ratio("irq.minSpreadRatio", c.IRQ.MinSpreadRatio, false)
	// irqbalance rebalances every 10s: a shorter cool-down could repair again
	// before the previous repair had a chance to show.
	v.duration("irq.cooldown", c.IRQ.Cooldown, 10*time.Second, "irqbalance needs up to 10s to show a repair's effect")
	if n := c.IRQ.MaxRepairsPerHour; n < 0 {
		v.fail("irq.maxRepairsPerHour", fmt.Sprintf("must be 0 or more, not %d (0 = never repair)", n))
	}
	v.duration("irq.verifyTimeout", c.IRQ.VerifyTimeout, time.Second, "a repair needs time to take effect")
	// Around host servicing the VF is removed and added back within seconds;
	// that must not be reported.
	v.duration("irq.vfMissingAfter", c.IRQ.VFMissingAfter, 10*time.Second, "the VF is briefly removed around every host servicing")
	v.globs("irq.interfaces.include", c.IRQ.Interfaces.Include)
	v.globs("irq.interfaces.exclude", c.IRQ.Interfaces.Exclude)

	v.oneOf("kubelet.pinning", c.Kubelet.Pinning)
	v.check("kubelet.unit", unitProblem(c.Kubelet.Unit))
	switch {
	case strings.TrimSpace(c.Kubelet.CPUs) != "":
		if _, err := cpuset.ParseList(c.Kubelet.CPUs); err != nil {
			v.fail("kubelet.cpus", fmt.Sprintf("%q is not a CPU list (e.g. 2-7 or 2,4-6)", shorten(c.Kubelet.CPUs)))
		}
	case c.Kubelet.Pinning == PinningStatic:
		// Point at the key that asked for static pinning when cpus was never set.
		path := "kubelet.cpus"
		if !v.fromFile(path) {
			path = "kubelet.pinning"
		}
		v.failAt(path, "kubelet.cpus", `is required when kubelet.pinning is static (e.g. cpus: "2-7")`)
	}
	if n := c.Kubelet.MinCPUs; n < 1 || n > cpuset.MaxCPU+1 {
		v.fail("kubelet.minCPUs", fmt.Sprintf("must be from 1 to %d, not %d", cpuset.MaxCPU+1, n))
	}
	// Each re-pin check is a round trip to systemd over D-Bus.
	v.duration("kubelet.repinInterval", c.Kubelet.RepinInterval, 10*time.Second, "each check asks systemd over D-Bus")

	v.oneOf("compaction.mode", c.Compaction.Mode)
	v.duration("compaction.checkInterval", c.Compaction.CheckInterval, CompactionMinCheckInterval, "each check reads the free lists of every NUMA node")
	if n := c.Compaction.Order; n < CompactionMinOrder || n > CompactionMaxOrder {
		v.fail("compaction.order", fmt.Sprintf("must be from %d to %d, not %d", CompactionMinOrder, CompactionMaxOrder, n))
	}
	v.ratio("compaction.unusableIndexThreshold", c.Compaction.UnusableIndexThreshold, true)
	// Compaction stalls allocations on the node while it runs.
	const stall = "compaction stalls allocations while it runs"
	if s, m := c.Compaction.SafetyInterval, c.Compaction.MinInterval; s >= CompactionMinSafetyInterval && m <= maxInterval && s < m {
		v.order("compaction.safetyInterval", "compaction.minInterval",
			fmt.Sprintf("must not be shorter than compaction.minInterval (%s), not %s", formatDuration(m), formatDuration(s)),
			fmt.Sprintf("must not be longer than compaction.safetyInterval (%s), not %s", formatDuration(s), formatDuration(m)))
	} else {
		v.duration("compaction.safetyInterval", s, CompactionMinSafetyInterval, stall)
	}
	v.duration("compaction.minInterval", c.Compaction.MinInterval, CompactionMinMinInterval, stall)

	v.ratio("symptoms.softirqBusyThreshold", c.Symptoms.SoftirqBusyThreshold, false)
	// CPU time is counted in 10ms ticks: over less than a second a share is
	// too coarse to compare with a threshold.
	v.duration("symptoms.window", c.Symptoms.Window, time.Second, "CPU time is counted in 10ms ticks")
	v.positive("symptoms.squeezePerSecond", c.Symptoms.SqueezePerSecond)
	if n := c.Symptoms.CgroupWarn; n < 1 {
		v.fail("symptoms.cgroupWarn", fmt.Sprintf("must be 1 or more, not %d", n))
	}
	v.positive("symptoms.kubeletSystemCPUWarn", c.Symptoms.KubeletSystemCPUWarn)

	v.oneOf("snat.enabled", c.SNAT.Enabled)
	// A scan walks the whole conntrack table.
	v.duration("snat.interval", c.SNAT.Interval, 5*time.Second, "each scan walks the whole conntrack table")
	if n := c.SNAT.AllocatedPorts; n < 0 || n > 65535 {
		v.fail("snat.allocatedPorts", fmt.Sprintf("must be from 0 to 65535, not %d (0 = from snat.backendPoolSize)", n))
	}
	if n := c.SNAT.BackendPoolSize; n < 0 || n > SNATMaxBackendPoolSize {
		v.fail("snat.backendPoolSize", fmt.Sprintf("must be from 0 to %d, not %d (0 = unknown)", SNATMaxBackendPoolSize, n))
	}
	v.ratio("snat.warnRatio", c.SNAT.WarnRatio, false)
	for i, p := range c.SNAT.PrivateCIDRs {
		if _, err := netip.ParsePrefix(strings.TrimSpace(p)); err != nil {
			v.failElem("snat.privateCIDRs", i, fmt.Sprintf("%q is not a CIDR prefix (e.g. 10.224.0.0/12)", shorten(p)))
		}
	}

	if n := strings.TrimSpace(c.DNS.ProbeName); n == "" || len(n) > 253 || strings.ContainsAny(n, " \t\n/") {
		v.fail("dns.probeName", fmt.Sprintf("%q is not a DNS name (e.g. kubernetes.default.svc.cluster.local)", shorten(c.DNS.ProbeName)))
	}
	for i, a := range c.DNS.Servers {
		if !validDNSServer(a) {
			v.failElem("dns.servers", i, fmt.Sprintf("%q is not an IP address or IP:port (e.g. 10.0.0.10)", shorten(a)))
		}
	}
	v.duration("dns.timeout", c.DNS.Timeout, 100*time.Millisecond, "a shorter wait counts slow answers as lost")
	if c.DNS.Timeout > 30*time.Second {
		v.fail("dns.timeout", fmt.Sprintf("must be at most 30s, not %s", formatDuration(c.DNS.Timeout)))
	}
	v.duration("dns.interval", c.DNS.Interval, 5*time.Second, "each probe sends queries to the cluster DNS")

	v.oneOf("conntrack.enabled", c.Conntrack.Enabled)
	v.duration("conntrack.window", c.Conntrack.Window, time.Second, "rates over a shorter window are noise")
	v.ratio("conntrack.fillProblem", c.Conntrack.FillProblem, false)

	v.oneOf("latency.enabled", c.Latency.Enabled)
	v.duration("latency.window", c.Latency.Window, time.Second, "percentiles over a shorter window are noise")
	v.duration("latency.p99Problem", c.Latency.P99Problem, 100*time.Microsecond, "a healthy CPU's softirqs wait microseconds")

	return errors.Join(v.errs...)
}

// validDNSServer: an IP address, or IP:port with a port above 0.
func validDNSServer(s string) bool {
	s = strings.TrimSpace(s)
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	ap, err := netip.ParseAddrPort(s)
	return err == nil && ap.Port() != 0
}

type validator struct {
	c    Config
	errs []error
}

// fail reports a problem with the key at path, at the file and line that set
// it when it was read from a file.
func (v *validator) fail(path, reason string) { v.failAt(path, path, reason) }

// failAt reports a problem with field at the position of the key at path.
func (v *validator) failAt(path, field, reason string) {
	e := &FieldError{Field: field, Reason: reason}
	if o, ok := v.c.origin(path); ok {
		e.File, e.Line = o.file, o.line
	}
	v.errs = append(v.errs, e)
}

// failElem reports a problem with element i of the list at path.
func (v *validator) failElem(path string, i int, reason string) {
	e := &FieldError{Field: fmt.Sprintf("%s[%d]", path, i), Reason: reason}
	if o, ok := v.c.origin(path); ok {
		e.File, e.Line = o.file, o.line
		if i < len(o.elems) {
			e.Line = o.elems[i]
		}
	}
	v.errs = append(v.errs, e)
}

// order reports two keys whose values are in the wrong order, on the first
// key unless only the second was set in a file: the error points at the line
// that was changed.
func (v *validator) order(first, second, firstReason, secondReason string) {
	if !v.fromFile(first) && v.fromFile(second) {
		v.fail(second, secondReason)
		return
	}
	v.fail(first, firstReason)
}

func (v *validator) fromFile(path string) bool {
	_, ok := v.c.origin(path)
	return ok
}

func (v *validator) check(path, problem string) {
	if problem != "" {
		v.fail(path, problem)
	}
}

// duration checks min <= d <= maxInterval; why says what the floor protects.
func (v *validator) duration(path string, d, min time.Duration, why string) {
	switch {
	case d < 0:
		v.fail(path, fmt.Sprintf("must not be negative, not %s", formatDuration(d)))
	case d < min:
		v.fail(path, fmt.Sprintf("must be at least %s, not %s (%s)", formatDuration(min), formatDuration(d), why))
	case d > maxInterval:
		v.fail(path, fmt.Sprintf("must be at most %s (a week), not %s", formatDuration(maxInterval), formatDuration(d)))
	}
}

// ratio checks 0 < x <= 1, or 0 <= x <= 1 when zeroOK.
func (v *validator) ratio(path string, x float64, zeroOK bool) {
	low := x > 0
	want := "must be above 0 and at most 1"
	if zeroOK {
		low = x >= 0
		want = "must be from 0 to 1"
	}
	if !low || !(x <= 1) { // written so that NaN fails
		v.fail(path, fmt.Sprintf("%s, not %s", want, formatValue(x)))
	}
}

func (v *validator) positive(path string, x float64) {
	if !(x > 0) || math.IsInf(x, 0) {
		v.fail(path, fmt.Sprintf("must be above 0, not %s", formatValue(x)))
	}
}

// oneOf checks s against the allowed values of the key at path.
func (v *validator) oneOf(path, s string) {
	f := fieldByPath[path]
	if !slices.Contains(f.values, s) {
		v.fail(path, fmt.Sprintf("%q is not one of %s", shorten(s), strings.Join(f.values, ", ")))
	}
}

// globs checks interface name patterns.
func (v *validator) globs(p string, globs []string) {
	for i, g := range globs {
		switch _, err := path.Match(g, ""); {
		case g == "":
			v.failElem(p, i, "is empty, which matches no interface")
		case err != nil:
			v.failElem(p, i, fmt.Sprintf("%q is not a valid glob (e.g. eth*, enP*)", shorten(g)))
		case strings.Contains(g, "/"):
			v.failElem(p, i, fmt.Sprintf("%q contains /, which no interface name does", shorten(g)))
		}
	}
}

var hostnameRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`)
})

// listenProblem checks a host:port listen address.
func listenProblem(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf(`%q is not host:port (e.g. 127.0.0.1:9829, :9829, [::1]:9829; "" disables the endpoint)`, shorten(s))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port %q is not a number from 1 to 65535", shorten(port))
	}
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if len(host) > 253 || !hostnameRE().MatchString(host) {
		return fmt.Sprintf("%q is not an IP address or a host name", shorten(host))
	}
	return ""
}

// endpointProblem checks the IMDS base URL.
func endpointProblem(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Opaque != "" || u.Hostname() == "" {
		return fmt.Sprintf("%q is not an http or https URL (e.g. http://169.254.169.254)", shorten(s))
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.Path != "" && u.Path != "/" {
		return fmt.Sprintf("%q must be a base URL, without a path, query or user (e.g. http://169.254.169.254)", shorten(s))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("port %q is not a number from 1 to 65535", shorten(p))
		}
	}
	return ""
}

// textProblem catches the usual paste mistakes in a name.
func textProblem(s string) string {
	if strings.TrimSpace(s) != s {
		return fmt.Sprintf("%q starts or ends with white space", shorten(s))
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Sprintf("%q contains control characters", shorten(s))
	}
	return ""
}

var unitRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9:_.\\@-]+\.service$`) })

// unitProblem checks a systemd service unit name.
func unitProblem(s string) string {
	switch {
	case !strings.HasSuffix(s, ".service"):
		return fmt.Sprintf("%q must end in .service (e.g. kubelet.service)", shorten(s))
	case len(s) > 255 || !unitRE().MatchString(s):
		return fmt.Sprintf("%q is not a systemd unit name", shorten(s))
	}
	return ""
}

// Warnings are settings that are valid but probably not what was meant, in a
// person's words, with the file and line where they were set when known.
// `config validate` prints them and the daemon logs them at start and reload.
func (c Config) Warnings() []string {
	var w []string
	if u := c.Kubelet.Unit; !strings.Contains(u, "kubelet") || !strings.HasSuffix(u, ".service") {
		at := ""
		if o, ok := c.origin("kubelet.unit"); ok {
			at = fmt.Sprintf("%s:%d: ", o.file, o.line)
		}
		w = append(w, fmt.Sprintf("%skubelet.unit: %q does not look like kubelet's service; nodekeeper pins the CPUs of whatever unit this names", at, u))
	}
	return w
}
