package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// KeyDoc documents one configuration key.
type KeyDoc struct {
	Path    string // YAML path, e.g. "irq.minSpreadRatio"
	Type    string // e.g. "duration", "number", "restart | sighup | spread | none"
	Default string // the default as written in YAML, e.g. "2m", `"127.0.0.1:9829"`, `["ib*"]`
	Doc     string // what the key means, one line
}

// Keys returns every configuration key, in the order of the packaged default
// file, with its default (from Default) and its meaning.
func Keys() []KeyDoc {
	d := Default()
	out := make([]KeyDoc, 0, len(fields))
	for _, f := range fields {
		out = append(out, KeyDoc{
			Path:    f.path,
			Type:    f.typeName(),
			Default: formatValue(f.get(&d)),
			Doc:     f.doc,
		})
	}
	return out
}

// kind is how a key's YAML value is decoded.
type kind int

const (
	kindBool     kind = iota
	kindString        // any scalar, taken as written
	kindTristate      // a string, or a YAML bool normalised to "true"/"false"
	kindCPUList       // a string holding a CPU list ("2-7"), or ""
	kindDuration      // a Go duration string with a unit
	kindInt
	kindFloat
	kindList // a sequence of strings
)

// field is one key of the table every other view of the configuration is
// derived from: decoding, Keys, and the tests of the packaged default file.
// Its path is the chain of yaml tags leading to its Config field, and its kind
// picks the value type that decodes it (values.go); TestFieldTagsMatchTable
// keeps the table and the struct tags in step.
type field struct {
	path   string
	kind   kind
	typ    string   // type shown in Keys when the kind's name is not precise enough
	values []string // the allowed values of an enumeration
	doc    string
	ptr    func(*Config) any // pointer to the field in c
}

var fields = []*field{
	{path: "dryRun", kind: kindBool, ptr: func(c *Config) any { return &c.DryRun },
		doc: "Detect and report, but change nothing: repairs, pins and compactions are only logged."},

	{path: "metrics.listen", kind: kindString, typ: "host:port", ptr: func(c *Config) any { return &c.Metrics.Listen },
		doc: `Address of the Prometheus endpoint; "" disables it. For fleet scraping, set the node IP.`},

	{path: "imds.enabled", kind: kindTristate, values: []string{IMDSAuto, IMDSTrue, IMDSFalse}, ptr: func(c *Config) any { return &c.IMDS.Enabled },
		doc: "Poll Azure instance metadata for scheduled events; auto = when DMI identifies an Azure VM (vendor and asset tag)."},
	{path: "imds.endpoint", kind: kindString, typ: "URL", ptr: func(c *Config) any { return &c.IMDS.Endpoint },
		doc: "Base URL of the instance metadata service."},
	{path: "imds.pollInterval", kind: kindDuration, ptr: func(c *Config) any { return &c.IMDS.PollInterval },
		doc: "How often scheduled events are polled while an event for this VM is listed."},
	{path: "imds.idlePollInterval", kind: kindDuration, ptr: func(c *Config) any { return &c.IMDS.IdlePoll },
		doc: "How often they are polled while none is (events are announced 15 min ahead; each poll wakes the daemon)."},
	{path: "imds.resourceName", kind: kindString, ptr: func(c *Config) any { return &c.IMDS.ResourceName },
		doc: `This VM's name in scheduled events; "" = compute.name from instance metadata.`},
	{path: "imds.approveFreeze", kind: kindBool, ptr: func(c *Config) any { return &c.IMDS.ApproveFreeze },
		doc: "Approve this VM's Freeze events instead of waiting for their start time; never while the VM's name is unknown."},

	{path: "pauseDetector.tick", kind: kindDuration, ptr: func(c *Config) any { return &c.PauseDetector.Tick },
		doc: "How often the pause detector wakes up to measure the time since its last wake-up (each wake-up costs CPU on every node)."},
	{path: "pauseDetector.gapThreshold", kind: kindDuration, ptr: func(c *Config) any { return &c.PauseDetector.GapThreshold },
		doc: "A gap between two wake-ups longer than this counts as a VM pause."},

	{path: "irq.checkInterval", kind: kindDuration, ptr: func(c *Config) any { return &c.IRQ.CheckInterval },
		doc: "How often the NIC IRQ spread is checked when nothing triggers a check sooner."},
	{path: "irq.settleDelay", kind: kindDuration, ptr: func(c *Config) any { return &c.IRQ.SettleDelay },
		doc: "Wait this long after a resume or a NIC (VF) appearing before judging the spread."},
	{path: "irq.remediation", kind: kindString, values: []string{RemediationRestart, RemediationSighup, RemediationSpread, RemediationNone}, ptr: func(c *Config) any { return &c.IRQ.Remediation },
		doc: "Repair of a bad spread: restart or SIGHUP irqbalance, spread the IRQs ourselves (sighup while irqbalance is active), or none."},
	{path: "irq.fallbackSpread", kind: kindBool, ptr: func(c *Config) any { return &c.IRQ.FallbackSpread },
		doc: "Spread the IRQs ourselves when irqbalance is not installed or not active."},
	{path: "irq.minSpreadRatio", kind: kindFloat, ptr: func(c *Config) any { return &c.IRQ.MinSpreadRatio },
		doc: "A NIC's queue IRQs must be on at least this share of min(IRQs, eligible CPUs) distinct CPUs."},
	{path: "irq.cooldown", kind: kindDuration, ptr: func(c *Config) any { return &c.IRQ.Cooldown },
		doc: "After a repair, no new repair of the same kind for this long (restarts: from irqbalance's InactiveExitTimestamp)."},
	{path: "irq.maxRepairsPerHour", kind: kindInt, ptr: func(c *Config) any { return &c.IRQ.MaxRepairsPerHour },
		doc: "At most this many IRQ repairs in any hour; 0 = never repair, only report."},
	{path: "irq.verifyTimeout", kind: kindDuration, ptr: func(c *Config) any { return &c.IRQ.VerifyTimeout },
		doc: "After a repair, re-check until the spread is good or this much time has passed."},
	{path: "irq.vfMissingAfter", kind: kindDuration, ptr: func(c *Config) any { return &c.IRQ.VFMissingAfter },
		doc: "An accelerated networking VF that was present and is gone this long is reported as a problem."},
	{path: "irq.interfaces.include", kind: kindList, typ: "list of globs", ptr: func(c *Config) any { return &c.IRQ.Interfaces.Include },
		doc: "Interface name globs to check; empty = every NIC with queue IRQs."},
	{path: "irq.interfaces.exclude", kind: kindList, typ: "list of globs", ptr: func(c *Config) any { return &c.IRQ.Interfaces.Exclude },
		doc: "Interface name globs never checked, even when include matches them."},

	{path: "kubelet.pinning", kind: kindString, values: []string{PinningAuto, PinningStatic, PinningOff}, ptr: func(c *Config) any { return &c.Kubelet.Pinning },
		doc: "Keep kubelet off the net_rx CPUs: auto chooses from the IRQ placement, static uses kubelet.cpus, off removes the pin."},
	{path: "kubelet.unit", kind: kindString, typ: "unit name", ptr: func(c *Config) any { return &c.Kubelet.Unit },
		doc: "The systemd unit that runs kubelet."},
	{path: "kubelet.cpus", kind: kindCPUList, typ: "CPU list", ptr: func(c *Config) any { return &c.Kubelet.CPUs },
		doc: `CPUs kubelet runs on with static pinning, e.g. "2-7"; required then, unused otherwise.`},
	{path: "kubelet.minCPUs", kind: kindInt, ptr: func(c *Config) any { return &c.Kubelet.MinCPUs },
		doc: "Auto pinning never leaves kubelet fewer CPUs than this."},
	{path: "kubelet.repinInterval", kind: kindDuration, ptr: func(c *Config) any { return &c.Kubelet.RepinInterval },
		doc: "How often the kubelet pin is checked and applied again if it was lost."},

	{path: "compaction.mode", kind: kindString, values: []string{CompactionFragmentation, CompactionPeriodic, CompactionOff}, ptr: func(c *Config) any { return &c.Compaction.Mode },
		doc: "fragmentation: compact a NUMA node when it is fragmented, and every safetyInterval; periodic: only every safetyInterval; off: never."},
	{path: "compaction.checkInterval", kind: kindDuration, ptr: func(c *Config) any { return &c.Compaction.CheckInterval },
		doc: "How often memory fragmentation is measured."},
	{path: "compaction.order", kind: kindInt, ptr: func(c *Config) any { return &c.Compaction.Order },
		doc: "Block size judged, as a page order (3 = blocks of 8 pages, 32 KiB with 4 KiB pages)."},
	{path: "compaction.unusableIndexThreshold", kind: kindFloat, ptr: func(c *Config) any { return &c.Compaction.UnusableIndexThreshold },
		doc: "Compact a node when the share of its free memory unusable for such blocks is above this."},
	{path: "compaction.safetyInterval", kind: kindDuration, ptr: func(c *Config) any { return &c.Compaction.SafetyInterval },
		doc: "Compact every node at least this often, whatever the fragmentation (the safety net)."},
	{path: "compaction.minInterval", kind: kindDuration, ptr: func(c *Config) any { return &c.Compaction.MinInterval },
		doc: "Never compact the same NUMA node more often than this."},

	{path: "symptoms.softirqBusyThreshold", kind: kindFloat, ptr: func(c *Config) any { return &c.Symptoms.SoftirqBusyThreshold },
		doc: "Share of a CPU's time in softirq (from /proc/stat) that counts as saturated."},
	{path: "symptoms.window", kind: kindDuration, ptr: func(c *Config) any { return &c.Symptoms.Window },
		doc: "Time over which the symptom rates are measured."},
	{path: "symptoms.squeezePerSecond", kind: kindFloat, ptr: func(c *Config) any { return &c.Symptoms.SqueezePerSecond },
		doc: "time_squeeze rate on a CPU (softnet_stat) that counts as saturated."},
	{path: "symptoms.cgroupWarn", kind: kindInt, ptr: func(c *Config) any { return &c.Symptoms.CgroupWarn },
		doc: "Warn above this many descendants of the root cgroup (cgroup.stat; on v1, num_cgroups)."},
	{path: "symptoms.kubeletSystemCPUWarn", kind: kindFloat, ptr: func(c *Config) any { return &c.Symptoms.KubeletSystemCPUWarn },
		doc: "Warn when kubelet's system time is above this many CPUs (0.5 = half of one CPU)."},

	{path: "snat.enabled", kind: kindTristate, values: []string{SNATAuto, SNATTrue, SNATFalse}, ptr: func(c *Config) any { return &c.SNAT.Enabled },
		doc: "Scan the conntrack table for SNAT port use in the daemon; auto = where the table can be read. check snat always answers."},
	{path: "snat.interval", kind: kindDuration, ptr: func(c *Config) any { return &c.SNAT.Interval },
		doc: "Time between two scans (a scan costs about 3 s of CPU per million entries; long scans push the next back)."},
	{path: "snat.allocatedPorts", kind: kindInt, ptr: func(c *Config) any { return &c.SNAT.AllocatedPorts },
		doc: "The node's SNAT ports per destination; 0 = Azure's default table from backendPoolSize, else 1024. NAT Gateway: 50000."},
	{path: "snat.backendPoolSize", kind: kindInt, ptr: func(c *Config) any { return &c.SNAT.BackendPoolSize },
		doc: "VMs in the load balancer's backend pool (Azure's default allocation: 1024 ports up to 50 VMs ... 32 above 800); 0 = unknown."},
	{path: "snat.warnRatio", kind: kindFloat, ptr: func(c *Config) any { return &c.SNAT.WarnRatio },
		doc: "A problem when the flows towards one destination reach this share of the ports."},
	{path: "snat.privateCIDRs", kind: kindList, typ: "list of CIDRs", ptr: func(c *Config) any { return &c.SNAT.PrivateCIDRs },
		doc: "Destinations that spend no SNAT port besides the built-in private ranges: the VNet's prefixes, peered networks."},

	{path: "dns.enabled", kind: kindBool, ptr: func(c *Config) any { return &c.DNS.Enabled },
		doc: "Probe the cluster DNS in the daemon (the unit must allow its address: see nodekeeper(8)). check dns always answers."},
	{path: "dns.probeName", kind: kindString, ptr: func(c *Config) any { return &c.DNS.ProbeName },
		doc: "The name resolved (an A query), through the servers in order."},
	{path: "dns.servers", kind: kindList, typ: "list of addresses", ptr: func(c *Config) any { return &c.DNS.Servers },
		doc: "DNS servers (IP or IP:port) to probe; empty = kubelet's clusterDNS from its config file."},
	{path: "dns.timeout", kind: kindDuration, ptr: func(c *Config) any { return &c.DNS.Timeout },
		doc: "Wait for one answer this long; a query unanswered in it counts as a timeout (problem)."},
	{path: "dns.interval", kind: kindDuration, ptr: func(c *Config) any { return &c.DNS.Interval },
		doc: "Time between two probes in the daemon."},

	{path: "conntrack.enabled", kind: kindTristate, values: []string{SNATAuto, SNATTrue, SNATFalse}, ptr: func(c *Config) any { return &c.Conntrack.Enabled },
		doc: "Watch conntrack drops, the table's fill and DNS pods' UDP drops in the daemon; auto = where the counters can be read. check conntrack always answers."},
	{path: "conntrack.window", kind: kindDuration, ptr: func(c *Config) any { return &c.Conntrack.Window },
		doc: "Time between two samples of the counters: rates are over it."},
	{path: "conntrack.fillProblem", kind: kindFloat, ptr: func(c *Config) any { return &c.Conntrack.FillProblem },
		doc: "A problem when the table's entries reach this share of nf_conntrack_max."},

	{path: "latency.enabled", kind: kindTristate, values: []string{SNATAuto, SNATTrue, SNATFalse}, ptr: func(c *Config) any { return &c.Latency.Enabled },
		doc: "Measure how long raised NET_RX softirqs wait, per CPU, with eBPF in the daemon (needs CAP_BPF and CAP_PERFMON); auto = where the programs attach."},
	{path: "latency.window", kind: kindDuration, ptr: func(c *Config) any { return &c.Latency.Window },
		doc: "One measurement: the percentiles are over it."},
	{path: "latency.p99Problem", kind: kindDuration, ptr: func(c *Config) any { return &c.Latency.P99Problem },
		doc: "A CPU whose p99 wait reaches this is a problem and a symptom (IRQ check, kubelet re-pin)."},
}

// fieldByPath indexes fields by YAML path.
var fieldByPath = func() map[string]*field {
	m := make(map[string]*field, len(fields))
	for _, f := range fields {
		m[f.path] = f
	}
	return m
}()

// section is a YAML mapping of the schema: the top level, "irq",
// "irq.interfaces", …
type section struct {
	path     string
	names    []string            // keys in table order
	children map[string]*section // sub-sections, by key
	leaves   map[string]*field   // keys holding a value, by key
}

// schema is the top-level section, built from fields.
var schema = func() *section {
	root := &section{children: map[string]*section{}, leaves: map[string]*field{}}
	for _, f := range fields {
		s := root
		parts := strings.Split(f.path, ".")
		for _, p := range parts[:len(parts)-1] {
			sub := s.children[p]
			if sub == nil {
				sub = &section{path: joinPath(s.path, p), children: map[string]*section{}, leaves: map[string]*field{}}
				s.children[p] = sub
				s.names = append(s.names, p)
			}
			s = sub
		}
		leaf := parts[len(parts)-1]
		s.leaves[leaf] = f
		s.names = append(s.names, leaf)
	}
	return root
}()

func joinPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func (f *field) typeName() string {
	switch {
	case f.values != nil:
		return strings.Join(f.values, " | ")
	case f.typ != "":
		return f.typ
	}
	switch f.kind {
	case kindBool:
		return "bool"
	case kindDuration:
		return "duration"
	case kindInt:
		return "integer"
	case kindFloat:
		return "number"
	case kindList:
		return "list of strings"
	}
	return "string"
}

// get returns a copy of the field's value in c.
func (f *field) get(c *Config) any {
	switch p := f.ptr(c).(type) {
	case *bool:
		return *p
	case *string:
		return *p
	case *time.Duration:
		return *p
	case *int:
		return *p
	case *float64:
		return *p
	case *[]string:
		return slices.Clone(*p)
	}
	panic(fmt.Sprintf("config: field %s has an unsupported type %T", f.path, f.ptr(c)))
}

// formatValue writes v as it would be written in YAML.
func formatValue(v any) string {
	switch v := v.(type) {
	case bool:
		return strconv.FormatBool(v)
	case string:
		return formatString(v)
	case time.Duration:
		return formatDuration(v)
	case int:
		return strconv.Itoa(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	return fmt.Sprint(v)
}

// formatString writes s plain when YAML reads it back as the same string, and
// double-quoted otherwise (Go's quoting is valid YAML).
func formatString(s string) string {
	plain := s != ""
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')) {
			plain = false
			break
		}
	}
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null":
		plain = false
	}
	if plain {
		return s
	}
	return strconv.Quote(s)
}

// formatDuration writes d in the largest single unit that holds it exactly
// (90s, 2m, 3h), or as time.Duration.String does when there is none.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	for _, u := range []struct {
		d    time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}, {time.Millisecond, "ms"}, {time.Microsecond, "us"}} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return d.String()
}
