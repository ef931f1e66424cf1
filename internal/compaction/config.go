package compaction

import "github.com/nodekeeper/nodekeeper/internal/config"

// ConfigFrom maps the compaction.* keys of cfg to the manager's
// configuration: the one mapping the daemon and `nodekeeper check` share.
// The defaults and bounds are the config package's (config.Default,
// config.CompactionMinOrder…); dryRun is the daemon's --dry-run or dryRun.
func ConfigFrom(cfg config.Config, dryRun bool) Config {
	c := cfg.Compaction
	return Config{Mode: Mode(c.Mode), CheckInterval: c.CheckInterval, Order: c.Order,
		UnusableIndexThreshold: c.UnusableIndexThreshold, SafetyInterval: c.SafetyInterval,
		MinInterval: c.MinInterval, DryRun: dryRun}
}
