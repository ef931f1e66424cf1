package irq

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/vishvananda/netlink"
)

// LinkLister names the host's network interfaces.
type LinkLister interface {
	LinkNames(ctx context.Context) ([]string, error)
}

// SysfsLinks lists interfaces from class/net under the sysfs root: the only
// source for fixture roots, and a fallback on a live host.
type SysfsLinks struct{ FS *hostfs.FS }

func (s SysfsLinks) LinkNames(context.Context) ([]string, error) {
	names, err := hostfs.ReadDirNames(s.FS.Sys("class", "net"))
	sort.Strings(names)
	return names, err
}

// NetlinkLinks lists interfaces over rtnetlink, as the kernel sees them now.
type NetlinkLinks struct{}

func (NetlinkLinks) LinkNames(context.Context) ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links over netlink: %w", err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	sort.Strings(names)
	return names, nil
}

// Links picks netlink on the live host and sysfs for any other sysfs root.
func Links(h *hostfs.FS) LinkLister {
	if h.Live() {
		return NetlinkLinks{}
	}
	return SysfsLinks{FS: h}
}

// NIC is one network interface as a user knows it, with the queue IRQs that
// carry its packets. On Azure with accelerated networking, Interface is the
// hv_netvsc interface (eth0) and DeviceInterface the VF (enP…s1) that owns the
// IRQs.
type NIC struct {
	Interface       string
	DeviceInterface string
	Driver          string
	NUMANode        int // -1: unknown
	Queues          []QueueIRQ
	Netvsc          bool // Azure synthetic interface
	VF              bool // Netvsc only: a VF is enslaved now
	Channels        []VMBusChannel
}

// QueueIRQ is one NIC queue interrupt.
type QueueIRQ struct {
	IRQ   int
	Name  string // the handler name (/proc/interrupts' last column)
	Queue string // QueueName(Name)
}

// VMBusChannel is one channel of an Azure synthetic NIC: it has no /proc/irq
// entry; its target CPU is a sysfs attribute.
type VMBusChannel struct {
	Interface string `json:"interface"`
	Channel   string `json:"channel"`
	CPU       int    `json:"cpu"`
}

// Filter selects interfaces by glob (path.Match) on either of their names.
type Filter struct{ Include, Exclude []string }

func (f Filter) keep(names ...string) bool {
	for _, n := range names {
		for _, g := range f.Exclude {
			if ok, _ := path.Match(g, n); ok {
				return false
			}
		}
	}
	if len(f.Include) == 0 {
		return true
	}
	for _, n := range names {
		for _, g := range f.Include {
			if ok, _ := path.Match(g, n); ok {
				return true
			}
		}
	}
	return false
}

// Discoverer finds NIC queue IRQs under a host root.
type Discoverer struct {
	fs     *hostfs.FS
	links  LinkLister
	filter Filter
	r      *hostfs.IRQReader
}

// NewDiscoverer returns a Discoverer. It keeps a read buffer: one per goroutine.
func NewDiscoverer(h *hostfs.FS, links LinkLister, f Filter) *Discoverer {
	return &Discoverer{fs: h, links: links, filter: f, r: h.NewIRQReader()}
}

// Discover lists the NICs with a device (physical, VF or netvsc), their queue
// IRQs and vmbus channels. Virtual interfaces (lo, bridges, veth, ifb) have no
// device and are not listed.
func (d *Discoverer) Discover(ctx context.Context) ([]NIC, error) {
	names, err := d.links.LinkNames(ctx)
	if err != nil {
		return nil, err
	}
	var nics []NIC
	var unnamed []*QueueIRQ // IRQs whose names must come from /proc/interrupts
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		netdev := d.fs.Sys("class", "net", name)
		if _, err := os.Lstat(filepath.Join(netdev, "device")); err != nil {
			continue // virtual interface
		}
		driver := linkBase(filepath.Join(netdev, "device", "driver"))
		if master := linkBase(filepath.Join(netdev, "master")); master != "" &&
			linkBase(d.fs.Sys("class", "net", master, "device", "driver")) == "hv_netvsc" {
			continue // an Azure VF: listed under its netvsc master
		}
		nic := NIC{Interface: name, DeviceInterface: name, Driver: driver, NUMANode: -1}
		owner := name
		if driver == "hv_netvsc" {
			nic.Netvsc = true
			nic.Channels = d.channels(name, netdev)
			if vf := d.lower(netdev); vf != "" {
				nic.VF, nic.DeviceInterface, owner = true, vf, vf
				nic.Driver = linkBase(d.fs.Sys("class", "net", vf, "device", "driver"))
			}
		}
		if !d.filter.keep(nic.Interface, nic.DeviceInterface) {
			continue
		}
		if !nic.Netvsc || nic.VF {
			irqs, numa, err := d.deviceIRQs(owner)
			if err != nil {
				return nil, fmt.Errorf("interface %s: %w", owner, err)
			}
			nic.NUMANode = numa
			for _, irq := range irqs {
				nic.Queues = append(nic.Queues, QueueIRQ{IRQ: irq})
			}
		}
		nics = append(nics, nic)
	}
	// Name every IRQ: /sys/kernel/irq/N/actions, one small file each, or, on
	// kernels without it, one pass over /proc/interrupts for all of them.
	for i := range nics {
		for j := range nics[i].Queues {
			q := &nics[i].Queues[j]
			name, err := d.r.Actions(q.IRQ)
			switch {
			case err == nil:
				q.Name = name
			case errors.Is(err, fs.ErrNotExist):
				unnamed = append(unnamed, q)
			default:
				return nil, err
			}
		}
	}
	if len(unnamed) > 0 {
		want := make(map[int]bool, len(unnamed))
		for _, q := range unnamed {
			want[q.IRQ] = true
		}
		names, err := d.fs.InterruptNames(want)
		if err != nil {
			return nil, fmt.Errorf("name IRQs from interrupts: %w", err)
		}
		for _, q := range unnamed {
			q.Name = names[q.IRQ]
		}
	}
	for i := range nics {
		qs := nics[i].Queues[:0]
		for _, q := range nics[i].Queues {
			if queue, ok := QueueName(q.Name); ok {
				q.Queue = queue
				qs = append(qs, q)
			}
		}
		sort.Slice(qs, func(a, b int) bool { return queueLess(qs[a].Queue, qs[b].Queue) })
		nics[i].Queues = qs
	}
	return nics, nil
}

// queueLess orders queues by kind, then by number (input.2 < input.10 < output.0).
func queueLess(a, b string) bool {
	ka, kb := strings.TrimRight(a, "0123456789"), strings.TrimRight(b, "0123456789")
	if ka != kb {
		return ka < kb
	}
	return queueIndex(a) < queueIndex(b)
}

// deviceIRQs returns the MSI IRQs of a netdev's device (or of its parent: a
// virtio netdev's device is the virtio device, whose PCI parent holds
// msi_irqs) and that device's NUMA node.
func (d *Discoverer) deviceIRQs(netdev string) ([]int, int, error) {
	dev, err := filepath.EvalSymlinks(d.fs.Sys("class", "net", netdev, "device"))
	if err != nil {
		return nil, -1, err
	}
	for _, dir := range []string{dev, filepath.Dir(dev)} {
		names, err := hostfs.ReadDirNames(filepath.Join(dir, "msi_irqs"))
		if err != nil {
			return nil, -1, err
		}
		if names == nil {
			continue
		}
		irqs := make([]int, 0, len(names))
		for _, n := range names {
			if v, err := strconv.Atoi(n); err == nil && v >= 0 {
				irqs = append(irqs, v)
			}
		}
		sort.Ints(irqs)
		return irqs, readNUMANode(filepath.Join(dir, "numa_node")), nil
	}
	return nil, -1, nil // no MSI: legacy INTx NICs are out of scope
}

func readNUMANode(p string) int {
	var buf [32]byte
	b, err := hostfs.ReadFile(p, buf[:0])
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// lower returns the first lower_<name> link of a netvsc interface: its VF.
func (d *Discoverer) lower(netdev string) string {
	names, _ := hostfs.ReadDirNames(netdev)
	sort.Strings(names)
	for _, n := range names {
		if vf, ok := strings.CutPrefix(n, "lower_"); ok {
			return vf
		}
	}
	return ""
}

// channels reads the target CPU of each vmbus channel of a netvsc interface.
func (d *Discoverer) channels(name, netdev string) []VMBusChannel {
	dir := filepath.Join(netdev, "device", "channels")
	ids, _ := hostfs.ReadDirNames(dir)
	sort.Slice(ids, func(i, j int) bool { return queueIndex(ids[i]) < queueIndex(ids[j]) })
	var out []VMBusChannel
	var buf [32]byte
	for _, id := range ids {
		b, err := hostfs.ReadFile(filepath.Join(dir, id, "cpu"), buf[:0])
		if err != nil {
			continue
		}
		cpu, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		out = append(out, VMBusChannel{Interface: name, Channel: id, CPU: cpu})
	}
	return out
}

// linkBase is the last element of a symlink's target ("" if it is not a link).
func linkBase(p string) string {
	t, err := os.Readlink(p)
	if err != nil {
		return ""
	}
	return filepath.Base(t)
}
