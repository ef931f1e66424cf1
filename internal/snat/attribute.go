package snat

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io/fs"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// Kinds of source (Source.Kind).
const (
	KindPod     = "pod"
	KindHost    = "host"
	KindUnknown = "unknown"
)

// Owner is who holds a source address.
type Owner struct {
	Kind      string
	Namespace string // pod's namespace, when known
	Pod       string // pod's name (its UID when kubelet's log directory is missing)
	PID       int    // a process in the network namespace holding the address (0 for the host)
	NetNS     uint64 // that network namespace's inode
}

// Resolver maps source addresses to their owners without kubectl or the
// CRI: every network namespace of the node (one process each, from the
// proc root) lists its local addresses (its net/fib_trie and net/if_inet6);
// the process's cgroup names the pod's UID (kubepods…pod<UID>…) and
// kubelet's log directory /var/log/pods/<namespace>_<pod>_<uid> its name.
// The addresses of the namespace nodekeeper runs in are the host's.
// The mapping is cached and rebuilt only when an address is unknown, at most
// every MinRefresh.
type Resolver struct {
	h          *hostfs.FS
	now        func() time.Time
	MinRefresh time.Duration

	mu      sync.Mutex
	byIP    map[netip.Addr]Owner
	last    time.Time
	scanned bool
}

// DefaultMinRefresh is how often at most the namespaces are walked again.
const DefaultMinRefresh = 5 * time.Second

// NewResolver reads the host through h; now is the clock.
func NewResolver(h *hostfs.FS, now func() time.Time) *Resolver {
	return &Resolver{h: h, now: now, MinRefresh: DefaultMinRefresh}
}

// Resolve returns the owner of each address (KindUnknown when none is
// known). A pod that vanished since the last walk reads as unknown.
func (r *Resolver) Resolve(ctx context.Context, ips []netip.Addr) (map[netip.Addr]Owner, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	missing := false
	for _, ip := range ips {
		if _, ok := r.byIP[ip.Unmap()]; !ok {
			missing = true
			break
		}
	}
	var err error
	if missing && (!r.scanned || r.now().Sub(r.last) >= r.MinRefresh) {
		var m map[netip.Addr]Owner
		if m, err = r.walk(ctx); err == nil {
			r.byIP = m
		}
		r.last, r.scanned = r.now(), true
	}
	out := make(map[netip.Addr]Owner, len(ips))
	for _, ip := range ips {
		o, ok := r.byIP[ip.Unmap()]
		if !ok {
			o = Owner{Kind: KindUnknown}
		}
		out[ip] = o
	}
	return out, err
}

// walk builds the address → owner map from the proc root.
func (r *Resolver) walk(ctx context.Context) (map[netip.Addr]Owner, error) {
	m := make(map[netip.Addr]Owner)
	self, err := r.h.NetNSInode("self")
	if err != nil {
		return nil, err
	}
	for _, a := range r.localAddrs("self") {
		m[a] = Owner{Kind: KindHost, NetNS: self}
	}
	pids, err := r.h.PIDs()
	if err != nil {
		return nil, err
	}
	seen := map[uint64]bool{self: true}
	seenNet := map[uint64]bool{} // by /proc/<pid>/net/dev inode, for namespaces whose own inode is refused
	if k, err := r.h.ProcNetInode("self"); err == nil {
		seenNet[k] = true
	}
	var pods map[string][2]string // uid → namespace, name (read once, when needed)
	for i, pid := range pids {
		if i%256 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p := strconv.Itoa(pid)
		ino, err := r.h.NetNSInode(p)
		if err != nil {
			// Without CAP_SYS_PTRACE the link of another user's process
			// (most pods) is refused; /proc/<pid>/net is not, and its dev
			// file's inode is one per namespace: the pod is still named,
			// its namespace inode left unknown (0).
			k, kerr := r.h.ProcNetInode(p)
			if kerr != nil || seenNet[k] {
				continue // gone, a kernel thread, or a namespace already listed
			}
			seenNet[k] = true
			ino = 0
		} else if seen[ino] {
			continue
		} else {
			// No second stat per process here: a namespace reached both
			// ways is only read twice, the first owner kept.
			seen[ino] = true
		}
		addrs := r.localAddrs(p)
		if len(addrs) == 0 {
			continue
		}
		o := Owner{Kind: KindUnknown, PID: pid, NetNS: ino}
		if cg, err := hostfs.ReadFile(r.h.Proc(p, "cgroup"), nil); err == nil {
			if uid := PodUID(cg); uid != "" {
				if pods == nil {
					pods = r.podLogDirs()
				}
				o.Kind, o.Pod = KindPod, uid
				if nn, ok := pods[uid]; ok {
					o.Namespace, o.Pod = nn[0], nn[1]
				}
			}
		}
		for _, a := range addrs {
			if _, taken := m[a]; !taken {
				m[a] = o
			}
		}
	}
	return m, nil
}

// localAddrs lists the addresses of pid's network namespace, loopback and
// link-local left out. Unreadable files (a process that just ended) give none.
func (r *Resolver) localAddrs(pid string) []netip.Addr {
	var out []netip.Addr
	if b, err := hostfs.ReadFile(r.h.Proc(pid, "net", "fib_trie"), nil); err == nil {
		out = ParseFibTrieLocal(b)
	}
	if b, err := hostfs.ReadFile(r.h.Proc(pid, "net", "if_inet6"), nil); err == nil {
		out = append(out, ParseIfInet6(b)...)
	}
	return out
}

// podLogDirs maps pod UIDs to (namespace, name) from kubelet's log
// directories. A missing directory (not a Kubernetes node) gives none.
func (r *Resolver) podLogDirs() map[string][2]string {
	names, err := hostfs.ReadDirNames(r.h.Root("var", "log", "pods"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	out := make(map[string][2]string, len(names))
	for _, n := range names {
		if ns, pod, uid, ok := ParsePodLogDir(n); ok {
			out[uid] = [2]string{ns, pod}
		}
	}
	return out
}

// ParsePodLogDir splits kubelet's pod log directory name
// <namespace>_<pod>_<uid> (namespaces and pod names cannot hold "_").
func ParsePodLogDir(name string) (namespace, pod, uid string, ok bool) {
	parts := strings.Split(name, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" || !isUID(parts[2]) {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}

// PodUID finds the pod UID in a /proc/PID/cgroup file: cgroupfs driver
// paths hold "/pod<uid>/", systemd driver paths "-pod<uid_with_underscores>.slice".
// "" when the process is in no pod's cgroup.
func PodUID(cgroup []byte) string {
	for line := range bytes.Lines(cgroup) {
		_, path, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		if _, path, ok = bytes.Cut(path, []byte(":")); !ok {
			continue
		}
		if !bytes.Contains(path, []byte("kubepods")) {
			continue
		}
		for seg := range strings.SplitSeq(strings.TrimSpace(string(path)), "/") {
			seg = strings.TrimSuffix(seg, ".slice")
			i := strings.LastIndex(seg, "pod")
			if i < 0 || (i > 0 && seg[i-1] != '-') {
				continue
			}
			uid := strings.ReplaceAll(seg[i+3:], "_", "-")
			if isUID(uid) {
				return uid
			}
		}
	}
	return ""
}

// isUID accepts a Kubernetes object UID (an RFC 4122 UUID in text form).
func isUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case '0' <= c && c <= '9', 'a' <= c && c <= 'f':
		default:
			return false
		}
	}
	return true
}

// ParseFibTrieLocal returns the local IPv4 addresses of a network namespace
// from its /proc/net/fib_trie: each "|-- A.B.C.D" leaf followed by a
// "/32 host LOCAL" line, loopback (127/8) left out, each address once.
func ParseFibTrieLocal(b []byte) []netip.Addr {
	var out []netip.Addr
	var leaf netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "|-- "); ok {
			leaf, _ = netip.ParseAddr(rest)
			continue
		}
		if strings.HasPrefix(line, "/32 host LOCAL") && leaf.Is4() && !leaf.IsLoopback() {
			seen := false
			for _, a := range out {
				seen = seen || a == leaf
			}
			if !seen {
				out = append(out, leaf)
			}
		}
	}
	return out
}

// ParseIfInet6 returns the global IPv6 addresses of /proc/net/if_inet6
// (address in 32 hex digits, ifindex, prefix length, scope, flags, name);
// loopback and link-local scopes are left out.
func ParseIfInet6(b []byte) []netip.Addr {
	var out []netip.Addr
	for line := range bytes.Lines(b) {
		f := strings.Fields(string(line))
		if len(f) < 4 || len(f[0]) != 32 {
			continue
		}
		raw, err := hex.DecodeString(f[0])
		if err != nil {
			continue
		}
		scope, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil || scope != 0 {
			continue
		}
		a := netip.AddrFrom16([16]byte(raw))
		if a.IsLoopback() || a.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, a)
	}
	return out
}
