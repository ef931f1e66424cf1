package conntrack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Counters are the conntrack event counters of one CPU
// (enum ctattr_stats_cpu), or their sum. Each is a 32-bit counter in the
// kernel that wraps and restarts with its network namespace.
type Counters struct {
	Found         uint64 `json:"found"`
	Invalid       uint64 `json:"invalid"`
	Insert        uint64 `json:"insert"`
	InsertFailed  uint64 `json:"insert_failed"` // the new entry lost a race (the DNS A/AAAA clash on old kernels)
	Drop          uint64 `json:"drop"`          // dropped: insert failed and the packet went with it, or table full
	EarlyDrop     uint64 `json:"early_drop"`    // an unassured entry evicted to make room: the table is full
	Error         uint64 `json:"error"`
	SearchRestart uint64 `json:"search_restart"`
	ClashResolve  uint64 `json:"clash_resolve"` // a clash the kernel resolved (≥ 5.6): the race, survived
	ChainTooLong  uint64 `json:"chaintoolong"`  // a hash chain too long (≥ 5.15): an attack or a bad hash
}

// CPUStats are one CPU's counters.
type CPUStats struct {
	CPU int
	Counters
}

// Global is the table's size: the entries now and the limit
// (nf_conntrack_max). HasMax is false on kernels that do not send the limit
// over netlink (before 5.7): read /proc/sys/net/netfilter/nf_conntrack_max.
type Global struct {
	Entries uint64
	Max     uint64
	HasMax  bool
}

// Attributes of the stats messages (include/uapi/linux/netfilter/nfnetlink_conntrack.h).
const (
	msgGetStatsCPU = 4 // IPCTNL_MSG_CT_GET_STATS_CPU
	msgGetStats    = 5 // IPCTNL_MSG_CT_GET_STATS

	ctaStatsFound         = 2
	ctaStatsInvalid       = 4
	ctaStatsInsert        = 8
	ctaStatsInsertFailed  = 9
	ctaStatsDrop          = 10
	ctaStatsEarlyDrop     = 11
	ctaStatsError         = 12
	ctaStatsSearchRestart = 13
	ctaStatsClashResolve  = 14
	ctaStatsChainTooLong  = 15

	ctaStatsGlobalEntries    = 1
	ctaStatsGlobalMaxEntries = 2
)

// ReadCPUStats asks the kernel for every CPU's conntrack counters in the
// calling thread's network namespace (one small netlink dump: a message per
// possible CPU). ti-mo/conntrack has this call but its Stats lack the two
// counters newer kernels added (clash_resolve, chaintoolong), and
// vishvananda/netlink has none; the request is the library's, the decoding
// is this package's walk.
func ReadCPUStats(ctx context.Context) ([]CPUStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|msgGetStatsCPU, unix.NLM_F_DUMP)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: nl.NFNETLINK_V0})
	var out []CPUStats
	var decodeErr error
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, unix.NFNL_SUBSYS_CTNETLINK<<8|msgGetStatsCPU, func(msg []byte) bool {
		s, err := DecodeCPUStats(msg)
		if err != nil {
			decodeErr = err
			return true
		}
		out = append(out, s)
		return true
	})
	if err != nil {
		return nil, classify(err)
	}
	if len(out) == 0 && decodeErr != nil {
		return nil, &Error{Kind: Failed, Err: decodeErr}
	}
	return out, nil
}

// ReadGlobal asks the kernel for the table's entry count and limit in the
// calling thread's network namespace.
func ReadGlobal(ctx context.Context) (Global, error) {
	if err := ctx.Err(); err != nil {
		return Global{}, err
	}
	// The kernel marks its one answer NLM_F_MULTI without a NLMSG_DONE
	// after it: the ACK asked for ends the exchange.
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|msgGetStats, unix.NLM_F_ACK)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: nl.NFNETLINK_V0})
	var g Global
	var decodeErr error
	got := false
	err := req.ExecuteIter(unix.NETLINK_NETFILTER, unix.NFNL_SUBSYS_CTNETLINK<<8|msgGetStats, func(msg []byte) bool {
		g, decodeErr = DecodeGlobal(msg)
		got = decodeErr == nil
		return true
	})
	if err != nil {
		return Global{}, classify(err)
	}
	if !got {
		if decodeErr == nil {
			decodeErr = errors.New("no answer")
		}
		return Global{}, &Error{Kind: Failed, Err: decodeErr}
	}
	return g, nil
}

// DecodeCPUStats decodes one IPCTNL_MSG_CT_GET_STATS_CPU message (the
// nfgenmsg header, whose res_id is the CPU, then the counters).
func DecodeCPUStats(msg []byte) (CPUStats, error) {
	var s CPUStats
	if len(msg) < nl.SizeofNfgenmsg {
		return s, ErrMalformed
	}
	s.CPU = int(msg[2])<<8 | int(msg[3]) // res_id, big-endian
	err := walk(msg[nl.SizeofNfgenmsg:], func(typ uint16, v []byte) error {
		var p *uint64
		switch typ {
		case ctaStatsFound:
			p = &s.Found
		case ctaStatsInvalid:
			p = &s.Invalid
		case ctaStatsInsert:
			p = &s.Insert
		case ctaStatsInsertFailed:
			p = &s.InsertFailed
		case ctaStatsDrop:
			p = &s.Drop
		case ctaStatsEarlyDrop:
			p = &s.EarlyDrop
		case ctaStatsError:
			p = &s.Error
		case ctaStatsSearchRestart:
			p = &s.SearchRestart
		case ctaStatsClashResolve:
			p = &s.ClashResolve
		case ctaStatsChainTooLong:
			p = &s.ChainTooLong
		default:
			return nil
		}
		if len(v) < 4 {
			return ErrMalformed
		}
		*p = uint64(be32(v))
		return nil
	})
	return s, err
}

// DecodeGlobal decodes an IPCTNL_MSG_CT_GET_STATS message.
func DecodeGlobal(msg []byte) (Global, error) {
	var g Global
	if len(msg) < nl.SizeofNfgenmsg {
		return g, ErrMalformed
	}
	haveEntries := false
	err := walk(msg[nl.SizeofNfgenmsg:], func(typ uint16, v []byte) error {
		switch typ {
		case ctaStatsGlobalEntries, ctaStatsGlobalMaxEntries:
			if len(v) < 4 {
				return ErrMalformed
			}
			if typ == ctaStatsGlobalEntries {
				g.Entries, haveEntries = uint64(be32(v)), true
			} else {
				g.Max, g.HasMax = uint64(be32(v)), true
			}
		}
		return nil
	})
	if err == nil && !haveEntries {
		err = ErrIncomplete
	}
	return g, err
}

func be32(v []byte) uint32 {
	return uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
}

// ParseProcStat parses /proc/net/stat/nf_conntrack, the fallback where
// netlink is refused: a header line naming the columns, then a line of hex
// numbers per possible CPU. Columns are found by their header names, because
// their meaning moved: column 2 was "searched" (always 0 since 4.x) and is
// "clashres" since 5.6, column 8 was "delete_list" and is "chainlength" since
// 5.15 — prometheus/procfs still calls them Searched and DeleteList, which is
// why this parser does not use it. Unknown columns are ignored; a file
// without "drop" or "insert_failed", or with a row whose length differs from
// the header's, is refused. The first column (entries) is the same global
// count on every row and becomes Global.Entries.
func ParseProcStat(r io.Reader) ([]CPUStats, Global, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), 64<<10)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, Global{}, err
		}
		return nil, Global{}, errors.New("empty file")
	}
	header := strings.Fields(sc.Text())
	idx := map[string]int{}
	for i, h := range header {
		idx[h] = i
	}
	for _, need := range []string{"entries", "insert_failed", "drop", "early_drop"} {
		if _, ok := idx[need]; !ok {
			return nil, Global{}, fmt.Errorf("no %q column in the header %q", need, shortText(sc.Text()))
		}
	}
	var out []CPUStats
	var g Global
	for line := 2; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != len(header) {
			return nil, Global{}, fmt.Errorf("line %d has %d columns, the header %d", line, len(f), len(header))
		}
		vals := make([]uint64, len(f))
		for i, x := range f {
			v, err := strconv.ParseUint(x, 16, 64)
			if err != nil {
				return nil, Global{}, fmt.Errorf("line %d column %d: %q is not a hex number", line, i+1, shortText(x))
			}
			vals[i] = v
		}
		col := func(names ...string) uint64 {
			for _, n := range names {
				if i, ok := idx[n]; ok {
					return vals[i]
				}
			}
			return 0
		}
		out = append(out, CPUStats{CPU: len(out), Counters: Counters{
			Found: col("found"), Invalid: col("invalid"), Insert: col("insert"),
			InsertFailed: col("insert_failed"), Drop: col("drop"), EarlyDrop: col("early_drop"),
			Error: col("icmp_error", "error"), SearchRestart: col("search_restart"),
			ClashResolve: col("clashres"), ChainTooLong: col("chainlength"),
		}})
		g.Entries = col("entries")
	}
	if err := sc.Err(); err != nil {
		return nil, Global{}, err
	}
	if len(out) == 0 {
		return nil, Global{}, errors.New("no CPU rows")
	}
	return out, g, nil
}

func shortText(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// Sum adds the counters of every CPU.
func Sum(cpus []CPUStats) Counters {
	var c Counters
	for _, s := range cpus {
		c.Found += s.Found
		c.Invalid += s.Invalid
		c.Insert += s.Insert
		c.InsertFailed += s.InsertFailed
		c.Drop += s.Drop
		c.EarlyDrop += s.EarlyDrop
		c.Error += s.Error
		c.SearchRestart += s.SearchRestart
		c.ClashResolve += s.ClashResolve
		c.ChainTooLong += s.ChainTooLong
	}
	return c
}
