// Package logging owns how nodekeeper writes its log: the slog handlers for
// text and JSON output, the native journald handler used when the daemon runs
// under systemd (UPPER_SNAKE fields, PRIORITY, SYSLOG_IDENTIFIER, CODE_*), the
// attribute keys shared by every component, and the stable MESSAGE_IDs whose
// explanations ship in the journal catalog (systemd/nodekeeper.catalog), so
// that `journalctl -xu nodekeeper` tells an operator what happened and what to
// do about it.
//
// Components get a logger injected and derive one child per component
// (logger.With(logging.KeyCheck, "irq")); a log call that reports a
// remediation or a detected problem attaches its MESSAGE_ID with
// logging.Msg(logging.MsgRepairStarted).
package logging

import (
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/coreos/go-systemd/v22/journal"

	"github.com/nodekeeper/nodekeeper/internal/printable"
)

// Output formats accepted by New and NewForService.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// SyslogIdentifier is the SYSLOG_IDENTIFIER of every journal entry.
const SyslogIdentifier = "nodekeeper"

// MessageIDKey is the attribute key that carries a MESSAGE_ID. In the journal
// it becomes the MESSAGE_ID field whatever group the attribute sits in; text
// and JSON output show it as message_id.
const MessageIDKey = "MESSAGE_ID"

// messageIDText is how text and JSON output name the MESSAGE_ID attribute.
const messageIDText = "message_id"

// Msg returns the attribute that tags a log entry with a MESSAGE_ID, one of
// the Msg… constants.
func Msg(id string) slog.Attr { return slog.String(MessageIDKey, id) }

// Attribute keys shared by all components. Under journald each becomes the
// UPPER_SNAKE field named in its comment; the catalog entries refer to those
// fields, so a log call that attaches a MESSAGE_ID should use these keys for
// the fields its Msg… constant documents.
const (
	KeyCheck           = "check"                   // CHECK: irq | kubelet | compaction | softirq | snat | dns | conntrack | latency
	KeyAction          = "action"                  // ACTION: a remediation action, as in the metrics contract
	KeyResult          = "result"                  // RESULT: a remediation result, as in the metrics contract
	KeyReason          = "reason"                  // REASON: why something was done or skipped
	KeyInterface       = "interface"               // INTERFACE: the NIC as users know it
	KeyIRQ             = "irq"                     // IRQ: an IRQ number
	KeyCPUs            = "cpus"                    // CPUS: a CPU list such as 4-5,8
	KeyUnit            = "unit"                    // UNIT: a systemd unit name
	KeyNode            = "node"                    // NODE: a NUMA node number
	KeySource          = "source"                  // SOURCE: clock | imds
	KeyEventType       = "event_type"              // EVENT_TYPE: Azure scheduled event type
	KeyEventID         = "event_id"                // EVENT_ID: Azure scheduled event id
	KeyEventStatus     = "event_status"            // EVENT_STATUS: Scheduled | Started
	KeyPauseSeconds    = "pause_seconds"           // PAUSE_SECONDS: length of a VM pause
	KeyVersion         = "version"                 // VERSION: a package version
	KeyCgroups         = "cgroups"                 // CGROUPS: number of cgroups
	KeyCPUShare        = "cpu_share"               // CPU_SHARE: share of one CPU, 0..1 (or more)
	KeyError           = "err"                     // ERR: an error text
	KeyDemandPorts     = "demand_ports"            // DEMAND_PORTS: concurrent public flows towards the busiest destination
	KeyAllocatedPorts  = "allocated_ports"         // ALLOCATED_PORTS: the node's SNAT port budget per destination
	KeyAllocatedSource = "allocated_source"        // ALLOCATED_SOURCE: config | table | default
	KeyDestination     = "destination"             // DESTINATION: ip:port/proto or ip/udp
	KeyTopSource       = "top_source"              // TOP_SOURCE: namespace/pod, host, or an address
	KeyServer          = "server"                  // SERVER: a DNS server address
	KeyProbeName       = "probe_name"              // PROBE_NAME: the name the DNS probe resolves
	KeyRcode           = "rcode"                   // RCODE: a DNS answer's rcode (NOERROR, SERVFAIL…), empty without one
	KeyTimeouts        = "timeouts"                // TIMEOUTS: DNS queries unanswered within dns.timeout
	KeyAttempts        = "attempts"                // ATTEMPTS: DNS queries sent
	KeyTruncated       = "truncated"               // TRUNCATED: the UDP answer had the TC bit (asked again over TCP)
	KeyAnswerMS        = "answer_ms"               // ANSWER_MS: milliseconds from query to answer
	KeyEntries         = "entries"                 // ENTRIES: conntrack table entries
	KeyMax             = "max"                     // MAX: nf_conntrack_max
	KeyFill            = "fill"                    // FILL: entries/max, 0..1
	KeyDropRate        = "drop_per_s"              // DROP_PER_S: conntrack drops per second
	KeyEarlyDropRate   = "early_drop_per_s"        // EARLY_DROP_PER_S: conntrack early drops per second
	KeyTableFullLines  = "table_full_lines"        // TABLE_FULL_LINES: the kernel's "table full" lines in the window
	KeyInsertFailRate  = "insert_failed_per_s"     // INSERT_FAILED_PER_S: conntrack insert failures per second
	KeyClashRate       = "clash_resolve_per_s"     // CLASH_RESOLVE_PER_S: conntrack clashes resolved per second
	KeyDNSPod          = "dns_pod"                 // DNS_POD: namespace/pod (or process name) of a cluster DNS server
	KeyPID             = "pid"                     // PID: a process id
	KeyRcvbufRate      = "udp_rcvbuf_errors_per_s" // UDP_RCVBUF_ERRORS_PER_S: UDP receive-buffer errors per second
	KeyUDPInErrRate    = "udp_in_errors_per_s"     // UDP_IN_ERRORS_PER_S: UDP receive errors per second
	KeyP99BeforeUs     = "p99_before_us"           // P99_BEFORE_US: NET_RX softirq wait p99 before a kubelet pin, µs (-1: no samples)
	KeyP99AfterUs      = "p99_after_us"            // P99_AFTER_US: the same one latency window after the pin
)

// New returns a logger writing to w in format (FormatText or FormatJSON; any
// other value gives text) at level and above.
//
// Strings from outside (a NIC name, an IMDS description) may hold any bytes.
// Text output quotes such a value Go-style ("eth\xff0"), so every line stays
// one printable line. JSON output would turn bytes that are not UTF-8 into
// U+FFFD and lose them, so there the message and string and error values are
// escaped with package printable first, as in the journal.
func New(w io.Writer, format string, level slog.Level) *slog.Logger {
	if format == FormatJSON {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: jsonAttr}))
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: renameMessageID}))
}

// jsonAttr names the MESSAGE_ID attribute message_id and makes strings and
// error texts printable UTF-8.
func jsonAttr(groups []string, a slog.Attr) slog.Attr {
	a = renameMessageID(groups, a)
	switch a.Value.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(printable.Escape(a.Value.String()))
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok && err != nil {
			a.Value = slog.StringValue(printable.Escape(err.Error()))
		}
	}
	return a
}

// NewForService returns the daemon's logger. When stderr is connected to the
// journal (systemd's JOURNAL_STREAM matches it) and journald's socket can be
// reached, entries are sent to the journal natively, every attribute a field
// of its own; format is then not used. If a send fails, that entry and any
// later one that cannot be sent are written as text to stderr (the journal
// stream), and the first failure says so. Otherwise it is New(os.Stderr,
// format, level).
func NewForService(format string, level slog.Level) *slog.Logger {
	return newForService(os.Stderr, format, level, journal.StderrIsJournalStream, journal.Enabled, journal.Send)
}

// sendFunc sends one journal entry; journal.Send in production.
type sendFunc func(message string, priority journal.Priority, vars map[string]string) error

func newForService(stderr io.Writer, format string, level slog.Level,
	isStream func() (bool, error), reachable func() bool, send sendFunc) *slog.Logger {
	ok, err := isStream()
	if err != nil {
		l := New(stderr, format, level)
		l.Warn("cannot tell whether stderr is the journal; logging to stderr", KeyError, err.Error())
		return l
	}
	if !ok || !reachable() {
		return New(stderr, format, level)
	}
	fallback := slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: journalStreamAttr})
	return slog.New(newJournalHandler(send, fallback, level))
}

// renameMessageID shows the MESSAGE_ID attribute as message_id.
func renameMessageID(_ []string, a slog.Attr) slog.Attr {
	if isMessageIDKey(a.Key) {
		a.Key = messageIDText
	}
	return a
}

// journalStreamAttr formats the text written to a journal stream when a send
// failed: journald stamps each line itself, so the time is left out.
func journalStreamAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return renameMessageID(groups, a)
}

func isMessageIDKey(k string) bool { return strings.EqualFold(k, MessageIDKey) }

// compile-time check that the journal handler is a slog.Handler.
var _ slog.Handler = (*journalHandler)(nil)
