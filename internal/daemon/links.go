package daemon

import (
	"context"
	"log/slog"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// WatchLinks subscribes to rtnetlink link events and delivers the names of
// NICs (interfaces with a device: physical, VF, netvsc) that appeared, went
// or changed. Virtual interfaces — the veth pairs pods churn all day — are
// dropped with one Lstat each. A VF that disappears is reported by name when
// it was known as a NIC before.
func WatchLinks(ctx context.Context, h *hostfs.FS, log *slog.Logger) (<-chan string, error) {
	updates := make(chan netlink.LinkUpdate, 64)
	errs := make(chan error, 1)
	opts := netlink.LinkSubscribeOptions{ErrorCallback: func(err error) {
		select {
		case errs <- err:
		default:
		}
	}}
	if err := netlink.LinkSubscribeWithOptions(updates, ctx.Done(), opts); err != nil {
		return nil, err
	}
	out := make(chan string, 8)
	go func() {
		defer close(out)
		nics := map[string]bool{}
		for {
			select {
			case <-ctx.Done():
				return
			case err := <-errs:
				log.Warn("netlink link events stopped; NIC changes are seen by the periodic check only", "err", err)
				return
			case u, ok := <-updates:
				if !ok {
					return
				}
				name := u.Link.Attrs().Name
				_, err := os.Lstat(h.Sys("class", "net", name, "device"))
				isNIC := err == nil
				if !isNIC && !nics[name] {
					continue
				}
				nics[name] = isNIC
				select {
				case out <- name:
				default: // a check is already pending
				}
			}
		}
	}()
	return out, nil
}
