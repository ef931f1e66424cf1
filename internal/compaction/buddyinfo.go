package compaction

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strconv"
)

// MaxOrders caps the order columns accepted per buddyinfo line. Kernels print
// MAX_PAGE_ORDER+1 columns (11 on x86-64, up to 14 with large base pages); a
// line with more is not buddyinfo.
const MaxOrders = 64

// Zone is one line of /proc/buddyinfo: the free blocks of each order
// (Free[k] blocks of 2^k pages) of one zone of one NUMA node.
type Zone struct {
	Node int      `json:"node"`
	Zone string   `json:"zone"`
	Free []uint64 `json:"free"`
}

// ErrBuddyinfo is wrapped by every buddyinfo parse error.
var ErrBuddyinfo = errors.New("invalid buddyinfo")

// Kept by hand, not procfs's BuddyInfo, because procfs is wrong for this
// use: it never checks the "Node"/"zone" words, takes a node it cannot
// number, a line with no counts and an empty file as valid zones (pinned by
// TestProcfsBuddyinfoTooLenient), so a wrong file would be read as "no free
// memory"; its counts are float64. Both are well within the tick budget on
// the 192-CPU fixture (BenchmarkBuddyinfo192*): ≈ 25 µs, 18 allocations here
// against ≈ 48 µs, 21 allocations for procfs.

// ParseBuddyinfo parses /proc/buddyinfo:
//
//	Node 0, zone   Normal   2343   2037   1316 …
//
// It takes however many order columns each line has (at least one). Blank
// lines are skipped; anything else that does not look like a zone line is an
// error, so a wrong file is never read as "no free memory".
func ParseBuddyinfo(b []byte) ([]Zone, error) {
	var zones []Zone
	lineNo := 0
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		lineNo++
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 5 || string(f[0]) != "Node" || string(f[2]) != "zone" {
			return nil, fmt.Errorf("%w: line %d: want \"Node N, zone NAME counts…\"", ErrBuddyinfo, lineNo)
		}
		nodeField, ok := bytes.CutSuffix(f[1], []byte{','})
		if !ok {
			return nil, fmt.Errorf("%w: line %d: no comma after the node number", ErrBuddyinfo, lineNo)
		}
		node, err := strconv.Atoi(string(nodeField))
		if err != nil || node < 0 || node > math.MaxInt32 {
			return nil, fmt.Errorf("%w: line %d: bad node number %q", ErrBuddyinfo, lineNo, nodeField)
		}
		counts := f[4:]
		if len(counts) > MaxOrders {
			return nil, fmt.Errorf("%w: line %d: %d order columns, at most %d", ErrBuddyinfo, lineNo, len(counts), MaxOrders)
		}
		z := Zone{Node: node, Zone: string(f[3]), Free: make([]uint64, len(counts))}
		for k, c := range counts {
			n, err := strconv.ParseUint(string(c), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: order %d count %q", ErrBuddyinfo, lineNo, k, c)
			}
			z.Free[k] = n
		}
		zones = append(zones, z)
	}
	if len(zones) == 0 {
		return nil, fmt.Errorf("%w: no zone lines", ErrBuddyinfo)
	}
	return zones, nil
}

// Fragmentation is the state of a set of free lists at one target order o,
// with n_k free blocks of order k:
//
//	FreePages      = Σ n_k·2^k
//	FreeBlocks     = Σ n_k
//	SuitableBlocks = Σ_{k≥o} n_k·2^(k−o)    (blocks of 2^o pages that exist)
//	Unusable       = (FreePages − SuitableBlocks·2^o) / FreePages
//	                 0: every free page is in a block of order ≥ o;
//	                 1: none is (also 1 when there is no free page, as the kernel says)
//	Index          = 1 − (1 + FreePages/2^o) / FreeBlocks when SuitableBlocks = 0
//	                 (towards 1: the request fails for fragmentation; towards 0:
//	                 for lack of memory), −1 when a suitable block exists, and 0
//	                 when there are no free blocks at all — the kernel's
//	                 fragmentation index (mm/vmstat.c), without its rounding.
//
// Page counts saturate at the largest uint64 rather than wrap.
type Fragmentation struct {
	Order          int     `json:"order"`
	FreePages      uint64  `json:"free_pages"`
	FreeBlocks     uint64  `json:"free_blocks"`
	SuitableBlocks uint64  `json:"suitable_blocks"`
	Unusable       float64 `json:"unusable_index"`
	Index          float64 `json:"fragmentation_index"`
}

// Compute returns the fragmentation numbers of the free block counts free
// (free[k] blocks of order k) at order. A negative order is treated as 0.
func Compute(free []uint64, order int) Fragmentation {
	order = max(order, 0)
	fr := Fragmentation{Order: order}
	for k, n := range free {
		fr.FreePages = addSat(fr.FreePages, shlSat(n, k))
		fr.FreeBlocks = addSat(fr.FreeBlocks, n)
		if k >= order {
			fr.SuitableBlocks = addSat(fr.SuitableBlocks, shlSat(n, k-order))
		}
	}
	if fr.FreePages == 0 {
		fr.Unusable = 1
	} else {
		usable := shlSat(fr.SuitableBlocks, order)
		usable = min(usable, fr.FreePages)
		fr.Unusable = float64(fr.FreePages-usable) / float64(fr.FreePages)
	}
	switch {
	case fr.FreeBlocks == 0:
		fr.Index = 0
	case fr.SuitableBlocks > 0:
		fr.Index = -1
	default:
		requested := math.Ldexp(1, order)
		fr.Index = 1 - (1+float64(fr.FreePages)/requested)/float64(fr.FreeBlocks)
	}
	return fr
}

func addSat(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}

func shlSat(n uint64, k int) uint64 {
	if n == 0 {
		return 0
	}
	if k >= 64 || bits.LeadingZeros64(n) < k {
		return math.MaxUint64
	}
	return n << k
}

// ZoneIndex is one zone's fragmentation at the configured order.
type ZoneIndex struct {
	Zone string `json:"zone"`
	Fragmentation
}

// NodeIndex is one NUMA node's fragmentation at the configured order: the
// numbers of its most fragmented zone (named by Zone) — compaction works on
// the whole node, so the node is as bad as its worst zone — plus every zone's
// own numbers (for the per-zone metric).
//
// ZONE_DMA does not count towards the node when the node has another zone: it
// is the first 16 MiB on x86, held back by lowmem reserves for legacy
// devices, and tiny next to the zones allocations come from. Its numbers are
// still in Zones. (Free pages are no weight either: a node's Normal zone runs
// short of free memory exactly when its fragmentation matters, while DMA32
// keeps gigabytes free in large blocks on most VMs.)
type NodeIndex struct {
	Node int    `json:"node"`
	Zone string `json:"zone"`
	Fragmentation
	Zones []ZoneIndex `json:"zones"`
}

// zoneDMA is the kernel's name of ZONE_DMA in buddyinfo.
const zoneDMA = "DMA"

// Indices computes every zone's fragmentation at order and each node's (its
// worst zone), nodes in ascending order and zones as the kernel lists them.
func Indices(zones []Zone, order int) []NodeIndex {
	var out []NodeIndex
	idx := map[int]int{}
	for _, z := range zones {
		i, ok := idx[z.Node]
		if !ok {
			i = len(out)
			idx[z.Node] = i
			out = append(out, NodeIndex{Node: z.Node})
		}
		out[i].Zones = append(out[i].Zones, ZoneIndex{Zone: z.Zone, Fragmentation: Compute(z.Free, order)})
	}
	for i := range out {
		ni := &out[i]
		worst := -1
		for _, skipDMA := range []bool{true, false} {
			for j, z := range ni.Zones {
				if skipDMA && z.Zone == zoneDMA {
					continue
				}
				if worst < 0 || z.Unusable > ni.Zones[worst].Unusable {
					worst = j
				}
			}
			if worst >= 0 {
				break
			}
		}
		ni.Zone = ni.Zones[worst].Zone
		ni.Fragmentation = ni.Zones[worst].Fragmentation
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].Node < out[b].Node })
	return out
}
