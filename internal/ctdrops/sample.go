package ctdrops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/conntrack"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// Sample is one reading of the node: cumulative counters, to be compared
// with the next.
type Sample struct {
	At      time.Time
	Source  string // where the conntrack counters came from: "netlink" or "procfs"
	CPUs    []conntrack.CPUStats
	Entries uint64
	Max     uint64 // 0: unknown
	// HostUDP are the UDP counters of the network namespace nodekeeper runs
	// in (the host's); HasHostUDP says they could be read.
	HostUDP    UDP
	HasHostUDP bool
	DNS        []PodUDP // the cluster DNS pods found, by PID
	// TableFull counts the kernel's "table full, dropping packet" lines
	// read since the reader started (-1: the kernel log cannot be read).
	TableFull int64
}

// UDP are the UDP counters of /proc/PID/net/snmp that say a socket lost
// datagrams.
type UDP struct {
	RcvbufErrors uint64 // a socket's receive buffer was full: the datagram was dropped
	InErrors     uint64 // every datagram dropped on receive (buffer, checksum, …)
}

// PodUDP are the UDP counters of one cluster DNS pod's network namespace.
type PodUDP struct {
	Name string // namespace/pod when known, else the process name
	PID  int
	UDP
}

// Host reads samples of a host. Conntrack counters come from netlink in the
// calling process's network namespace (the host's, for the daemon), from
// /proc/net/stat/nf_conntrack only where netlink is refused or the roots are
// a fixture tree.
type Host struct {
	FS   *hostfs.FS
	Now  func() time.Time
	DNS  *DNSFinder
	Kmsg *Kmsg // nil: the kernel log is not read

	// netlink reads the counters (conntrack.ReadCPUStats and ReadGlobal);
	// replaced in tests.
	netlink func(ctx context.Context) ([]conntrack.CPUStats, conntrack.Global, error)
}

// NewHost is the reader of the host behind h.
func NewHost(h *hostfs.FS, now func() time.Time) *Host {
	return &Host{FS: h, Now: now, DNS: NewDNSFinder(h, now), netlink: readNetlink}
}

func readNetlink(ctx context.Context) ([]conntrack.CPUStats, conntrack.Global, error) {
	cpus, err := conntrack.ReadCPUStats(ctx)
	if err != nil {
		return nil, conntrack.Global{}, err
	}
	g, err := conntrack.ReadGlobal(ctx)
	return cpus, g, err
}

// ErrNoConntrack says the kernel has no connection tracking loaded (or
// none in this network namespace): nothing to judge.
var ErrNoConntrack = errors.New("connection tracking is not loaded (no nf_conntrack module): nothing to judge")

// Read takes one sample. Only the conntrack counters are required; the UDP
// counters and the kernel log are best effort.
func (r *Host) Read(ctx context.Context) (Sample, error) {
	s := Sample{At: r.Now(), TableFull: -1}
	var err error
	if r.FS.Live() && r.netlink != nil {
		var g conntrack.Global
		s.CPUs, g, err = r.netlink(ctx)
		if err == nil {
			s.Source, s.Entries, s.Max = "netlink", g.Entries, g.Max
			if !g.HasMax {
				s.Max, _ = readUint(r.FS.Proc("sys", "net", "netfilter", "nf_conntrack_max"))
			}
		}
	}
	if s.Source == "" {
		procErr := r.readProc(&s)
		switch {
		case procErr == nil:
		case err != nil && conntrack.KindOf(err) != conntrack.Unavailable:
			// netlink's reason is the better one (e.g. a permission).
			return s, err
		case errors.Is(procErr, os.ErrNotExist):
			return s, ErrNoConntrack
		default:
			return s, procErr
		}
	}
	if snmp, err := r.FS.Procfs().Self(); err == nil {
		if u, err := readSnmp(snmp); err == nil {
			s.HostUDP, s.HasHostUDP = u, true
		}
	}
	if r.DNS != nil {
		s.DNS = r.DNS.Read(ctx)
	}
	if r.Kmsg != nil {
		s.TableFull = r.Kmsg.TableFull()
	}
	return s, nil
}

func (r *Host) readProc(s *Sample) error {
	f, err := os.Open(r.FS.Proc("net", "stat", "nf_conntrack"))
	if err != nil {
		return err
	}
	defer f.Close()
	cpus, g, err := conntrack.ParseProcStat(f)
	if err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	s.CPUs, s.Entries, s.Source = cpus, g.Entries, "procfs"
	s.Max, _ = readUint(r.FS.Proc("sys", "net", "netfilter", "nf_conntrack_max"))
	if n, err := readUint(r.FS.Proc("sys", "net", "netfilter", "nf_conntrack_count")); err == nil {
		s.Entries = n
	}
	return nil
}

func readUint(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
}
