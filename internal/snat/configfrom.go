package snat

import "github.com/nodekeeper/nodekeeper/internal/config"

// ConfigFrom maps the snat.* keys of cfg to the check's configuration: the
// one mapping the daemon and `nodekeeper check`/`top` share.
func ConfigFrom(cfg config.Config) Config {
	return DefaultConfig()
}
