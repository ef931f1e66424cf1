package config

import (
	"strings"
	"testing"
	"time"
)

// The exported bounds are the ones Validate enforces: a value on each bound
// is accepted and one step past it is refused, naming the key.
func TestCompactionBounds(t *testing.T) {
	if DefaultCompaction() != Default().Compaction {
		t.Fatal("DefaultCompaction differs from Default().Compaction")
	}
	cases := []struct {
		name   string
		set    func(*Compaction)
		reject string // "" when the value is valid
	}{
		{"min order", func(c *Compaction) { c.Order = CompactionMinOrder }, ""},
		{"max order", func(c *Compaction) { c.Order = CompactionMaxOrder }, ""},
		{"below min order", func(c *Compaction) { c.Order = CompactionMinOrder - 1 }, "compaction.order"},
		{"above max order", func(c *Compaction) { c.Order = CompactionMaxOrder + 1 }, "compaction.order"},
		{"min check interval", func(c *Compaction) { c.CheckInterval = CompactionMinCheckInterval }, ""},
		{"below min check interval", func(c *Compaction) { c.CheckInterval = CompactionMinCheckInterval - time.Millisecond }, "compaction.checkInterval"},
		{"max check interval", func(c *Compaction) { c.CheckInterval = MaxInterval }, ""},
		{"above max check interval", func(c *Compaction) { c.CheckInterval = MaxInterval + time.Second }, "compaction.checkInterval"},
		{"min intervals", func(c *Compaction) {
			c.SafetyInterval, c.MinInterval = CompactionMinSafetyInterval, CompactionMinMinInterval
		}, ""},
		{"below min min interval", func(c *Compaction) { c.MinInterval = CompactionMinMinInterval - time.Second }, "compaction.minInterval"},
		{"below min safety interval", func(c *Compaction) {
			c.SafetyInterval, c.MinInterval = CompactionMinSafetyInterval-time.Second, CompactionMinMinInterval
		}, "compaction.safetyInterval"},
	}
	for _, tc := range cases {
		c := Default()
		tc.set(&c.Compaction)
		err := c.Validate()
		switch {
		case tc.reject == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.reject != "" && (err == nil || !strings.Contains(err.Error(), tc.reject+":")):
			t.Errorf("%s: want an error on %s, got %v", tc.name, tc.reject, err)
		}
	}
}
