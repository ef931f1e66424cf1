package symptoms

import "github.com/nodekeeper/nodekeeper/internal/config"

// ConfigFrom maps the symptoms.* keys of cfg to the watchers' configuration:
// the one mapping the daemon and `nodekeeper check`/`status` share.
func ConfigFrom(cfg config.Config) Config {
	return Config{
		SoftirqBusyThreshold: cfg.Symptoms.SoftirqBusyThreshold,
		Window:               cfg.Symptoms.Window,
		SqueezePerSecond:     cfg.Symptoms.SqueezePerSecond,
		CgroupWarn:           uint64(max(cfg.Symptoms.CgroupWarn, 0)),
		KubeletSystemCPUWarn: cfg.Symptoms.KubeletSystemCPUWarn,
	}
}
