package daemon

import "github.com/nodekeeper/nodekeeper/internal/metrics"

// errorOnce records an error the daemon goes on from: every occurrence is
// counted (nodekeeper_errors_total{component}), and it is logged once per
// reason — again only when the reason changes or after the component
// recovered (errorCleared). Main loop only.
func (d *Daemon) errorOnce(component metrics.Component, msg string, attrs ...any) {
	d.d.Metrics.IncError(component)
	if d.errs == nil {
		d.errs = map[metrics.Component]string{}
	}
	if d.errs[component] == msg {
		return
	}
	d.errs[component] = msg
	d.log.Warn(msg, append(attrs, "component", component)...)
}

// errorCleared notes that a component works again, saying so once when it
// had logged an error.
func (d *Daemon) errorCleared(component metrics.Component) {
	if msg, ok := d.errs[component]; ok {
		delete(d.errs, component)
		d.log.Info(string(component)+" works again (after: "+msg+")", "component", component)
	}
}

// notified says once per reason that systemd's notification socket refused
// a message: without READY=1 systemd times the start out, without WATCHDOG=1
// it restarts the daemon, so this must be seen.
func (d *Daemon) notified(err error) {
	if err != nil {
		d.errorOnce(metrics.ComponentNotify, "cannot notify systemd: "+err.Error())
	}
}
