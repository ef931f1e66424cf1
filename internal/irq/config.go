package irq

import "github.com/nodekeeper/nodekeeper/internal/config"

// OptionsFrom maps the irq.* keys of cfg to the check's options: the one
// mapping the daemon and `nodekeeper check`/`status` share, so that both
// judge the spread by the same settings.
func OptionsFrom(cfg config.Config) Options {
	return Options{
		Filter:         Filter{Include: cfg.IRQ.Interfaces.Include, Exclude: cfg.IRQ.Interfaces.Exclude},
		MinSpreadRatio: cfg.IRQ.MinSpreadRatio,
		VFMissingAfter: cfg.IRQ.VFMissingAfter,
	}
}
