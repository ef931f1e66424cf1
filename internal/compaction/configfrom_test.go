package compaction

import (
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/config"
)

func TestConfigFrom(t *testing.T) {
	if got, want := ConfigFrom(config.Default(), false), DefaultConfig(); got != want {
		t.Errorf("the defaults differ: config's map to %+v, the package's are %+v", got, want)
	}
	cfg := config.Default()
	cfg.Compaction = config.Compaction{Mode: config.CompactionPeriodic, CheckInterval: 3 * time.Minute, Order: 5,
		UnusableIndexThreshold: 0.5, SafetyInterval: 2 * time.Hour, MinInterval: 40 * time.Minute}
	want := Config{Mode: ModePeriodic, CheckInterval: 3 * time.Minute, Order: 5, UnusableIndexThreshold: 0.5,
		SafetyInterval: 2 * time.Hour, MinInterval: 40 * time.Minute, DryRun: true}
	if got := ConfigFrom(cfg, true); got != want {
		t.Errorf("ConfigFrom = %+v, want %+v", got, want)
	}
	// Every value the configuration accepts at its bounds is one the manager accepts.
	for _, order := range []int{config.CompactionMinOrder, config.CompactionMaxOrder} {
		cfg.Compaction.Order = order
		if err := ConfigFrom(cfg, false).Validate(); err != nil {
			t.Errorf("order %d: %v", order, err)
		}
	}
	for _, m := range []string{config.CompactionFragmentation, config.CompactionPeriodic, config.CompactionOff} {
		cfg.Compaction.Mode = m
		if err := ConfigFrom(cfg, false).Validate(); err != nil {
			t.Errorf("mode %s: %v", m, err)
		}
	}
}
