package nspawn

// Processes of this host and of the container's PID namespace, read from
// /proc.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// findLeader returns the child of nspawn that is PID 1 of a new PID namespace.
func findLeader(nspawn int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", nspawn))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(s)
			if err != nil {
				continue
			}
			if ids := nsPIDs(pid); len(ids) >= 2 && ids[len(ids)-1] == "1" {
				return pid
			}
		}
	}
	return 0
}

// HostPID returns this host's PID of the process whose PID in the container
// is pid.
func (c *Container) HostPID(pid int) (int, error) {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", c.leader))
	if err != nil {
		return 0, fmt.Errorf("nspawn: PID namespace of %s: %w", c.name, err)
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		if l, err := os.Readlink(dir + "/ns/pid"); err != nil || l != ns {
			continue
		}
		hostPID, err := strconv.Atoi(filepath.Base(dir))
		if err != nil {
			continue
		}
		if ids := nsPIDs(hostPID); len(ids) >= 2 && ids[len(ids)-1] == strconv.Itoa(pid) {
			return strconv.Atoi(ids[0])
		}
	}
	return 0, fmt.Errorf("nspawn: no process of this host is pid %d of container %s", pid, c.name)
}

// nsPIDs returns the PIDs of this host's process pid in its PID namespace and
// the ones above it, outermost first (NSpid of /proc/<pid>/status); nil when
// pid is gone.
func nsPIDs(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if ids, ok := strings.CutPrefix(line, "NSpid:"); ok {
			return strings.Fields(ids)
		}
	}
	return nil
}

// statFields returns the fields of /proc/<pid>/stat after the command (field
// 3, the state, first), nil when pid is gone.
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

// startTime returns field 22 of /proc/<pid>/stat, "" when pid is gone.
func startTime(pid int) string {
	f := statFields(pid)
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// ProcState returns the state letter of this host's process pid (R, S, T…),
// "" when pid is gone.
func ProcState(pid int) string {
	f := statFields(pid)
	if len(f) < 1 {
		return ""
	}
	return f[0]
}

// nspawnPIDs returns the PIDs of every systemd-nspawn of this host, whoever
// started it.
func nspawnPIDs() []int {
	comms, _ := filepath.Glob("/proc/[0-9]*/comm")
	var pids []int
	for _, f := range comms {
		b, err := os.ReadFile(f)
		if err != nil || strings.TrimSpace(string(b)) != "systemd-nspawn" {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		pids = append(pids, pid)
	}
	return pids
}
