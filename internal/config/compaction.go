package config

import "time"

// Bounds of the compaction keys. Validate enforces them; the compaction
// package takes its defaults and limits from here, so that one set of bounds
// holds for the configuration file and for the code that acts on it.
const (
	// CompactionMinOrder and CompactionMaxOrder bound compaction.order. The
	// kernel's buddy allocator has orders 0 to 10 (MAX_PAGE_ORDER) on x86-64
	// with 4 KiB pages; /proc/buddyinfo has one column per order.
	CompactionMinOrder = 0
	CompactionMaxOrder = 10
	// CompactionMinCheckInterval is the floor of compaction.checkInterval:
	// each check reads the free lists of every NUMA node.
	CompactionMinCheckInterval = time.Second
	// CompactionMinSafetyInterval and CompactionMinMinInterval are the floors
	// of compaction.safetyInterval and compaction.minInterval: compaction
	// stalls allocations on the node while it runs.
	CompactionMinSafetyInterval = time.Minute
	CompactionMinMinInterval    = time.Minute
	// MaxInterval is the ceiling of every duration key.
	MaxInterval = maxInterval
)

// DefaultCompaction is the documented default of the compaction keys.
func DefaultCompaction() Compaction { return Default().Compaction }
