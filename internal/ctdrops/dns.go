package ctdrops

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/procfs"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/snat"
)

// DNSProcesses are the process names (comm) of the cluster DNS servers whose
// network namespaces are read: CoreDNS, NodeLocal DNSCache and AKS LocalDNS.
var DNSProcesses = []string{"coredns", "node-cache", "localdns"}

// DNSFinder finds the cluster DNS processes and reads the UDP counters of
// their network namespaces (/proc/PID/net/snmp). Finding them reads every
// process's comm once; the PIDs are cached and looked for again only when one
// is gone, or after Rescan.
type DNSFinder struct {
	h      *hostfs.FS
	now    func() time.Time
	Rescan time.Duration // look for new DNS processes at most this often (default 5 min)

	pids     []dnsPID
	lastScan time.Time
	scanned  bool
}

type dnsPID struct {
	pid  int
	name string
}

// NewDNSFinder finds DNS processes in h's /proc.
func NewDNSFinder(h *hostfs.FS, now func() time.Time) *DNSFinder {
	return &DNSFinder{h: h, now: now, Rescan: 5 * time.Minute}
}

// Read returns the UDP counters of every DNS process found, one per network
// namespace.
func (d *DNSFinder) Read(ctx context.Context) []PodUDP {
	if !d.scanned || d.now().Sub(d.lastScan) >= d.Rescan {
		d.scan(ctx)
	}
	out, gone := d.read()
	if gone {
		d.scan(ctx)
		out, _ = d.read()
	}
	return out
}

func (d *DNSFinder) read() (out []PodUDP, gone bool) {
	for _, p := range d.pids {
		proc, err := d.h.Procfs().Proc(p.pid)
		if err != nil {
			gone = true
			continue
		}
		u, err := readSnmp(proc)
		if err != nil {
			gone = true
			continue
		}
		out = append(out, PodUDP{Name: p.name, PID: p.pid, UDP: u})
	}
	return out, gone
}

// scan walks /proc once for DNS processes, keeping the first of each
// network namespace.
func (d *DNSFinder) scan(ctx context.Context) {
	d.scanned, d.lastScan = true, d.now()
	d.pids = d.pids[:0]
	pids, err := d.h.PIDs()
	if err != nil {
		return
	}
	seen := map[uint64]bool{}
	logs := podLogDirs(d.h)
	for _, pid := range pids {
		if ctx.Err() != nil {
			return
		}
		comm, err := os.ReadFile(d.h.Proc(strconv.Itoa(pid), "comm"))
		if err != nil || !slices.Contains(DNSProcesses, strings.TrimSpace(string(comm))) {
			continue
		}
		ps := strconv.Itoa(pid)
		ino, err := d.h.NetNSInode(ps)
		if err != nil {
			ino, err = d.h.ProcNetInode(ps)
		}
		if err == nil {
			if seen[ino] {
				continue
			}
			seen[ino] = true
		}
		name := strings.TrimSpace(string(comm))
		if cg, err := os.ReadFile(d.h.Proc(ps, "cgroup")); err == nil {
			if uid := snat.PodUID(cg); uid != "" {
				if nsPod, ok := logs[uid]; ok {
					name = nsPod
				}
			}
		}
		d.pids = append(d.pids, dnsPID{pid: pid, name: name})
	}
}

// podLogDirs maps pod UIDs to "namespace/pod" from kubelet's pod log
// directories (/var/log/pods/NAMESPACE_POD_UID).
func podLogDirs(h *hostfs.FS) map[string]string {
	m := map[string]string{}
	ents, err := os.ReadDir(h.Root("var", "log", "pods"))
	if err != nil {
		return m
	}
	for _, e := range ents {
		if ns, pod, uid, ok := snat.ParsePodLogDir(e.Name()); ok {
			m[uid] = ns + "/" + pod
		}
	}
	return m
}

var errNoUDP = errors.New("no Udp lines")

// readSnmp reads the UDP counters of a process's network namespace with
// procfs's parser.
func readSnmp(p procfs.Proc) (UDP, error) {
	s, err := p.Snmp()
	if err != nil {
		return UDP{}, err
	}
	if s.Udp.RcvbufErrors == nil && s.Udp.InErrors == nil {
		return UDP{}, errNoUDP
	}
	var u UDP
	if s.Udp.RcvbufErrors != nil {
		u.RcvbufErrors = uint64(*s.Udp.RcvbufErrors)
	}
	if s.Udp.InErrors != nil {
		u.InErrors = uint64(*s.Udp.InErrors)
	}
	return u, nil
}
