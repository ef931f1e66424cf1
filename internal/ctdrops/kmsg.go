package ctdrops

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// TableFullLine is what the kernel logs (rate-limited) when it drops a packet
// because the conntrack table is full.
const TableFullLine = "nf_conntrack: table full, dropping packet"

// Kmsg follows the kernel log (/dev/kmsg) from where it stood when opened,
// without blocking, and counts the table-full lines. Each TableFull call
// reads at most MaxRecords records, so a flood of kernel messages costs a
// bounded read per window; the rest waits for the next call (or is
// overwritten, which the kernel reports and Kmsg skips).
type Kmsg struct {
	mu    sync.Mutex
	fd    int
	count int64
	buf   []byte
	// MaxRecords bounds the records read per call.
	MaxRecords int
}

// OpenKmsg opens path (/dev/kmsg) non-blocking at its end.
func OpenKmsg(path string) (*Kmsg, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	if _, err := unix.Seek(fd, 0, unix.SEEK_END); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "seek", Path: path, Err: err}
	}
	return &Kmsg{fd: fd, buf: make([]byte, 8192), MaxRecords: 4096}, nil
}

// TableFull reads the records logged since the last call and returns the
// number of table-full lines seen since OpenKmsg.
func (k *Kmsg) TableFull() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd < 0 {
		return k.count
	}
	for range k.MaxRecords {
		n, err := unix.Read(k.fd, k.buf)
		if errors.Is(err, syscall.EPIPE) {
			continue // records were overwritten before we read them
		}
		if err != nil || n <= 0 {
			break // EAGAIN: nothing more now
		}
		if IsTableFull(k.buf[:n]) {
			k.count++
		}
	}
	return k.count
}

// IsTableFull says whether a /dev/kmsg record ("PRI,SEQ,TS,FLAGS;TEXT\n"
// then continuation lines) is the table-full line.
func IsTableFull(rec []byte) bool {
	_, text, ok := bytes.Cut(rec, []byte{';'})
	if !ok {
		return false
	}
	if i := bytes.IndexByte(text, '\n'); i >= 0 {
		text = text[:i]
	}
	return bytes.Contains(text, []byte(TableFullLine))
}

// Close closes the kernel log.
func (k *Kmsg) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.fd < 0 {
		return nil
	}
	err := unix.Close(k.fd)
	k.fd = -1
	return err
}
