package irq

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// IrqbalanceEnvFiles are where distributions keep irqbalance's environment,
// relative to the root file system: Debian/Ubuntu, then the RHEL family.
var IrqbalanceEnvFiles = []string{"etc/default/irqbalance", "etc/sysconfig/irqbalance"}

// Banned is the set of CPUs irqbalance keeps IRQs off, and why.
type Banned struct {
	CPUs   cpuset.Set
	Source string // "IRQBALANCE_BANNED_CPULIST in etc/default/irqbalance", "isolated+nohz_full", …
}

// ParseEnvFile reads a shell-style environment file as systemd's
// EnvironmentFile= does: KEY=VALUE lines, optional `export `, single or double
// quotes, # comments, blank lines. Lines it cannot read are returned as
// errors but do not stop the rest from being read.
func ParseEnvFile(data string) (map[string]string, []error) {
	env := make(map[string]string)
	var errs []error
	for i, line := range strings.Split(data, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, val, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !validEnvKey(key) {
			errs = append(errs, fmt.Errorf("line %d: not KEY=VALUE", i+1))
			continue
		}
		val = strings.TrimSpace(val)
		if n := len(val); n >= 2 && (val[0] == '"' || val[0] == '\'') {
			if end := strings.IndexByte(val[1:], val[0]); end >= 0 {
				val = val[1 : 1+end]
			} else {
				errs = append(errs, fmt.Errorf("line %d: unterminated quote", i+1))
				continue
			}
		} else if j := strings.Index(val, " #"); j >= 0 {
			val = strings.TrimSpace(val[:j])
		}
		env[key] = val
	}
	return env, errs
}

func validEnvKey(k string) bool {
	if k == "" {
		return false
	}
	for i, c := range k {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// BannedFromEnv applies irqbalance's rule to its environment: a
// IRQBALANCE_BANNED_CPULIST wins, then IRQBALANCE_BANNED_CPUS (a hex mask);
// ok=false when neither is set (then irqbalance bans isolated ∪ nohz_full).
func BannedFromEnv(env map[string]string) (cpuset.Set, string, bool, error) {
	if v, ok := env["IRQBALANCE_BANNED_CPULIST"]; ok && strings.TrimSpace(v) != "" {
		s, err := cpuset.ParseList(v)
		return s, "IRQBALANCE_BANNED_CPULIST", true, err
	}
	if v, ok := env["IRQBALANCE_BANNED_CPUS"]; ok && strings.TrimSpace(v) != "" {
		s, err := cpuset.ParseMask(v)
		return s, "IRQBALANCE_BANNED_CPUS", true, err
	}
	return cpuset.Set{}, "", false, nil
}

// ReadBanned finds the CPUs irqbalance bans on this host.
func ReadBanned(h *hostfs.FS) (Banned, error) {
	for _, rel := range IrqbalanceEnvFiles {
		path := h.Root(rel)
		data, err := hostfs.ReadFile(path, nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Banned{}, err
		}
		env, _ := ParseEnvFile(string(data)) // irqbalance reads what it can too
		s, key, ok, err := BannedFromEnv(env)
		if err != nil {
			return Banned{}, fmt.Errorf("%s: %s: %w", path, key, err)
		}
		if ok {
			return Banned{CPUs: s, Source: key + " in /" + rel}, nil
		}
		break // the first file that exists is the one the distribution's unit reads
	}
	iso, err := h.IsolatedCPUs()
	if err != nil {
		return Banned{}, err
	}
	return Banned{CPUs: iso, Source: "isolated+nohz_full"}, nil
}

// Eligible is the set of CPUs irqbalance would spread a device's IRQs over:
// the online CPUs of the device's NUMA node, minus the banned ones; all online
// CPUs minus the banned when the node is unknown or has none usable. It is
// never empty while a CPU is online.
func Eligible(online, nodeCPUs cpuset.Set, banned cpuset.Set) cpuset.Set {
	if e := nodeCPUs.Intersect(online).Difference(banned); !e.IsEmpty() {
		return e
	}
	if e := online.Difference(banned); !e.IsEmpty() {
		return e
	}
	return online // irqbalance bans nothing when every CPU would be banned
}
