package latency

import "github.com/nodekeeper/nodekeeper/internal/config"

// ConfigFrom maps the latency.* keys: the one mapping the daemon and the CLI
// share.
func ConfigFrom(cfg config.Config) Config {
	return Config{Enabled: cfg.Latency.Enabled, Window: cfg.Latency.Window, P99Problem: cfg.Latency.P99Problem}
}
