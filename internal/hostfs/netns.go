package hostfs

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PIDs lists the processes under the proc root, in ascending order.
func (f *FS) PIDs() ([]int, error) {
	names, err := ReadDirNames(f.Proc())
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// NetNSInode returns the inode number that identifies the network namespace
// of process pid ("self": this process), from the ns/net link ("net:[N]").
func (f *FS) NetNSInode(pid string) (uint64, error) {
	link, err := os.Readlink(f.Proc(pid, "ns", "net"))
	if err != nil {
		return 0, err
	}
	s, okPrefix := strings.CutPrefix(link, "net:[")
	s, okSuffix := strings.CutSuffix(s, "]")
	if !okPrefix || !okSuffix {
		return 0, fmt.Errorf("network namespace link of %s: unexpected %q", pid, link)
	}
	return strconv.ParseUint(s, 10, 64)
}

// ProcNetInode returns the inode of pid's /proc/<pid>/net/dev: one per
// network namespace, like the namespace's own inode, but readable without
// ptrace access to the process (/proc/<pid>/ns/net of another user's
// process, or of one with capabilities the reader lacks, needs
// CAP_SYS_PTRACE; /proc/<pid>/net does not). It tells namespaces apart; it
// is not the namespace inode lsns shows.
func (f *FS) ProcNetInode(pid string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(f.Proc(pid, "net", "dev"), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
