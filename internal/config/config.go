// Package config owns nodekeeper's configuration: the schema as Go structs,
// the defaults, the validation rules, and loading the main YAML file plus its
// config.d/*.yaml overrides with every error reported as "FILE:LINE: field: reason".
//
// It also owns the table of keys (Keys) from which the documentation and the
// packaged default file are checked, so a key cannot be added, renamed or have
// its default changed without the documented file following.
//
// A file is decoded by yaml.v3 itself (KnownFields), into a struct of Config's
// shape whose leaves are the yaml.Unmarshaler value types of values.go; a walk
// of the file's node tree only attaches FILE:LINE to what was set or refused.
// A file overrides only the keys it sets; a list is replaced as a whole.
//
// Adding a key (or a section of keys) takes three edits in this package:
//
//   - a field in the Config struct (or a new section struct) with a
//     `yaml:"key"` tag and a Go type of bool, string, time.Duration, int,
//     float64 or []string;
//   - its default in Default;
//   - an entry in the table of keys in keys.go: the dotted path of tags, the
//     kind (which value type decodes it and what errors say it must be), a
//     pointer to the field, and a one-line doc; then any rule in validate.go.
//
// TestFieldTagsMatchTable fails until the tags and the table agree (same
// keys, same order, matching Go types), and TestDefaultFile until the
// packaged default file is regenerated with
// `go test ./internal/config -run TestDefaultFile -update`.
//
// A Config is a plain value: copy it freely. A Config returned by Load or
// LoadFiles remembers the file and line where each key was set, so that
// Validate can point at them; compare Configs with Equal, which ignores that
// bookkeeping (go-cmp uses Equal automatically; reflect.DeepEqual does not).
package config

import (
	"reflect"
	"time"
)

// DefaultPath is the main configuration file of a packaged install. Overrides
// are read from the config.d directory next to it.
const DefaultPath = "/etc/nodekeeper/config.yaml"

// Values of IMDS.Enabled.
const (
	IMDSAuto  = "auto"  // enabled when the VM is detected as an Azure VM
	IMDSTrue  = "true"  // always enabled
	IMDSFalse = "false" // never enabled
)

// Values of IRQ.Remediation.
const (
	RemediationRestart = "restart" // restart irqbalance over D-Bus
	RemediationSighup  = "sighup"  // send irqbalance SIGHUP
	RemediationSpread  = "spread"  // spread the IRQs ourselves (not while irqbalance is active)
	RemediationNone    = "none"    // report only
)

// Values of Kubelet.Pinning.
const (
	PinningAuto   = "auto"   // keep kubelet off the net_rx CPUs, chosen from the IRQ placement
	PinningStatic = "static" // pin kubelet to Kubelet.CPUs
	PinningOff    = "off"    // do not pin; remove a pin nodekeeper applied
)

// Values of Compaction.Mode.
const (
	CompactionFragmentation = "fragmentation" // compact when fragmentation calls for it, plus the safety net
	CompactionPeriodic      = "periodic"      // compact every SafetyInterval only
	CompactionOff           = "off"           // never compact
)

// Config is the whole configuration. The yaml tag of each field is its key;
// Keys documents every key.
type Config struct {
	DryRun        bool          `yaml:"dryRun"`
	Metrics       Metrics       `yaml:"metrics"`
	IMDS          IMDS          `yaml:"imds"`
	PauseDetector PauseDetector `yaml:"pauseDetector"`
	IRQ           IRQ           `yaml:"irq"`
	Kubelet       Kubelet       `yaml:"kubelet"`
	Compaction    Compaction    `yaml:"compaction"`
	Symptoms      Symptoms      `yaml:"symptoms"`
	SNAT          SNAT          `yaml:"snat"`
	DNS           DNS           `yaml:"dns"`
	Conntrack     Conntrack     `yaml:"conntrack"`
	Latency       Latency       `yaml:"latency"`

	// src records where each key's value was read from, keyed by YAML path.
	// It is set by Load and LoadFiles and never changed afterwards, so copies
	// of a Config may share it.
	src map[string]origin
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen"` // host:port to bind; "" disables the endpoint
}

// IMDS configures the Azure Instance Metadata Service client.
type IMDS struct {
	Enabled       string        `yaml:"enabled"`          // IMDSAuto, IMDSTrue or IMDSFalse
	Endpoint      string        `yaml:"endpoint"`         // base URL
	PollInterval  time.Duration `yaml:"pollInterval"`     // while an event for this VM is listed
	IdlePoll      time.Duration `yaml:"idlePollInterval"` // while none is
	ResourceName  string        `yaml:"resourceName"`     // "" = compute.name from instance metadata
	ApproveFreeze bool          `yaml:"approveFreeze"`
}

// PauseDetector configures the clock-gap VM pause detector.
type PauseDetector struct {
	Tick         time.Duration `yaml:"tick"`
	GapThreshold time.Duration `yaml:"gapThreshold"`
}

// IRQ configures the NIC IRQ spread check and its repair.
type IRQ struct {
	CheckInterval     time.Duration `yaml:"checkInterval"`
	SettleDelay       time.Duration `yaml:"settleDelay"`
	Remediation       string        `yaml:"remediation"` // one of the Remediation… constants
	FallbackSpread    bool          `yaml:"fallbackSpread"`
	MinSpreadRatio    float64       `yaml:"minSpreadRatio"`
	Cooldown          time.Duration `yaml:"cooldown"`
	MaxRepairsPerHour int           `yaml:"maxRepairsPerHour"` // 0 = repairs never run
	VerifyTimeout     time.Duration `yaml:"verifyTimeout"`
	VFMissingAfter    time.Duration `yaml:"vfMissingAfter"`
	Interfaces        Interfaces    `yaml:"interfaces"`
}

// Interfaces selects NICs by interface name globs (path.Match syntax).
type Interfaces struct {
	Include []string `yaml:"include"` // empty = every NIC with queue IRQs
	Exclude []string `yaml:"exclude"`
}

// Kubelet configures keeping kubelet off the net_rx CPUs.
type Kubelet struct {
	Pinning       string        `yaml:"pinning"` // one of the Pinning… constants
	Unit          string        `yaml:"unit"`    // systemd unit name
	CPUs          string        `yaml:"cpus"`    // CPU list, used when Pinning is PinningStatic
	MinCPUs       int           `yaml:"minCPUs"`
	RepinInterval time.Duration `yaml:"repinInterval"`
}

// Compaction configures memory compaction.
type Compaction struct {
	Mode                   string        `yaml:"mode"` // one of the Compaction… constants
	CheckInterval          time.Duration `yaml:"checkInterval"`
	Order                  int           `yaml:"order"`
	UnusableIndexThreshold float64       `yaml:"unusableIndexThreshold"`
	SafetyInterval         time.Duration `yaml:"safetyInterval"`
	MinInterval            time.Duration `yaml:"minInterval"`
}

// Symptoms configures the symptom watchers' thresholds.
type Symptoms struct {
	SoftirqBusyThreshold float64       `yaml:"softirqBusyThreshold"`
	Window               time.Duration `yaml:"window"`
	SqueezePerSecond     float64       `yaml:"squeezePerSecond"`
	CgroupWarn           int           `yaml:"cgroupWarn"`
	KubeletSystemCPUWarn float64       `yaml:"kubeletSystemCPUWarn"`
}

// SNAT configures the SNAT port check (`check snat`, `top snat` and the
// daemon's scan of the conntrack table).
type SNAT struct {
	Enabled         string        `yaml:"enabled"` // one of the SNAT… constants
	Interval        time.Duration `yaml:"interval"`
	AllocatedPorts  int           `yaml:"allocatedPorts"`  // 0 = from BackendPoolSize, else 1024
	BackendPoolSize int           `yaml:"backendPoolSize"` // 0 = unknown
	WarnRatio       float64       `yaml:"warnRatio"`
	PrivateCIDRs    []string      `yaml:"privateCIDRs"` // added to the built-in private ranges
}

// Values of SNAT.Enabled.
const (
	SNATAuto  = "auto"  // on where the conntrack table can be read (a live host)
	SNATTrue  = "true"  // on: an unreadable table is reported as unknown
	SNATFalse = "false" // off: the daemon does not scan (the CLI still answers)
)

// DNS configures the cluster DNS probe (`check dns` and the daemon's probe).
type DNS struct {
	Enabled   bool          `yaml:"enabled"`   // the daemon probes (the CLI always answers)
	ProbeName string        `yaml:"probeName"` // the name resolved
	Servers   []string      `yaml:"servers"`   // addresses (host or host:port); empty = kubelet's clusterDNS
	Timeout   time.Duration `yaml:"timeout"`   // of one query
	Interval  time.Duration `yaml:"interval"`  // between two probes in the daemon
}

// Conntrack configures `check conntrack`: conntrack drops, the table's
// fill, UDP drops of the host and the cluster DNS pods.
type Conntrack struct {
	Enabled     string        `yaml:"enabled"`     // one of the SNAT… constants (auto, true, false)
	Window      time.Duration `yaml:"window"`      // rates are over it
	FillProblem float64       `yaml:"fillProblem"` // a problem when entries/max reaches it
}

// Latency configures the NET_RX softirq latency measurement (`check
// latency`, the daemon's eBPF probes).
type Latency struct {
	Enabled    string        `yaml:"enabled"`    // one of the SNAT… constants (auto, true, false)
	Window     time.Duration `yaml:"window"`     // one measurement
	P99Problem time.Duration `yaml:"p99Problem"` // a CPU whose p99 reaches it is a problem
}

// SNATMaxBackendPoolSize is the largest backend pool Azure's default port
// allocation table covers.
const SNATMaxBackendPoolSize = 1000

// Default returns the configuration used for every key no file sets.
func Default() Config {
	return Config{
		DryRun:  false,
		Metrics: Metrics{Listen: "127.0.0.1:9829"},
		IMDS: IMDS{
			Enabled:       IMDSAuto,
			Endpoint:      "http://169.254.169.254",
			PollInterval:  time.Second,
			IdlePoll:      5 * time.Second,
			ResourceName:  "",
			ApproveFreeze: false,
		},
		PauseDetector: PauseDetector{
			Tick:         time.Second,
			GapThreshold: 2 * time.Second,
		},
		IRQ: IRQ{
			CheckInterval:     60 * time.Second,
			SettleDelay:       5 * time.Second,
			Remediation:       RemediationRestart,
			FallbackSpread:    true,
			MinSpreadRatio:    0.75,
			Cooldown:          2 * time.Minute,
			MaxRepairsPerHour: 6,
			VerifyTimeout:     30 * time.Second,
			VFMissingAfter:    2 * time.Minute,
			Interfaces: Interfaces{
				Include: nil,
				Exclude: []string{"ib*"},
			},
		},
		Kubelet: Kubelet{
			Pinning:       PinningAuto,
			Unit:          "kubelet.service",
			CPUs:          "",
			MinCPUs:       2,
			RepinInterval: 10 * time.Minute,
		},
		Compaction: Compaction{
			Mode:                   CompactionFragmentation,
			CheckInterval:          10 * time.Minute,
			Order:                  3,
			UnusableIndexThreshold: 0.8,
			SafetyInterval:         3 * time.Hour,
			MinInterval:            30 * time.Minute,
		},
		Symptoms: Symptoms{
			SoftirqBusyThreshold: 0.9,
			Window:               10 * time.Second,
			SqueezePerSecond:     100,
			CgroupWarn:           50000,
			KubeletSystemCPUWarn: 0.5,
		},
		SNAT: SNAT{
			Enabled:         SNATAuto,
			Interval:        30 * time.Second,
			AllocatedPorts:  0,
			BackendPoolSize: 0,
			WarnRatio:       0.8,
			PrivateCIDRs:    nil,
		},
		DNS: DNS{
			Enabled:   false,
			ProbeName: "kubernetes.default.svc.cluster.local",
			Servers:   nil,
			Timeout:   2 * time.Second,
			Interval:  60 * time.Second,
		},
		Conntrack: Conntrack{
			Enabled:     SNATAuto,
			Window:      60 * time.Second,
			FillProblem: 0.9,
		},
		Latency: Latency{
			Enabled:    SNATAuto,
			Window:     10 * time.Second,
			P99Problem: 10 * time.Millisecond,
		},
	}
}

// Equal reports whether c and o hold the same settings. It ignores where the
// settings were read from, and treats a nil and an empty list as equal.
func (c Config) Equal(o Config) bool {
	return reflect.DeepEqual(c.settings(), o.settings())
}

// settings is c without its origins, with empty lists as nil.
func (c Config) settings() Config {
	c.src = nil
	if len(c.IRQ.Interfaces.Include) == 0 {
		c.IRQ.Interfaces.Include = nil
	}
	if len(c.IRQ.Interfaces.Exclude) == 0 {
		c.IRQ.Interfaces.Exclude = nil
	}
	if len(c.SNAT.PrivateCIDRs) == 0 {
		c.SNAT.PrivateCIDRs = nil
	}
	if len(c.DNS.Servers) == 0 {
		c.DNS.Servers = nil
	}
	return c
}

// Origin returns the file and line that set the key at path (a YAML path such
// as "irq.cooldown", as listed by Keys). It returns "", 0 when the key holds its
// default, or when the value was changed in code after loading.
func (c Config) Origin(path string) (file string, line int) {
	o, ok := c.origin(path)
	if !ok {
		return "", 0
	}
	return o.file, o.line
}

// origin is where one key was set.
type origin struct {
	file  string
	line  int   // line of the key
	elems []int // lines of a list's elements
	value any   // the value as read, to tell whether the field still holds it
}

// origin returns where the key at path was set, if its field still holds the
// value read from there.
func (c Config) origin(path string) (origin, bool) {
	o, ok := c.src[path]
	if !ok {
		return origin{}, false
	}
	f := fieldByPath[path]
	if f == nil || !reflect.DeepEqual(f.get(&c), o.value) {
		return origin{}, false
	}
	return o, true
}
