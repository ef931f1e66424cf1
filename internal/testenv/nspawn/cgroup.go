package nspawn

// The cgroups systemd-nspawn runs in, on hosts whose init is not systemd.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// cgroupRoots returns the mount points of the cgroup2 hierarchy and of the
// name=systemd v1 hierarchy, whichever are mounted.
func cgroupRoots() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var roots []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if len(fields) < 5 || len(tail) < 3 || fields[3] != "/" {
			continue
		}
		switch {
		case tail[0] == "cgroup2":
		case tail[0] == "cgroup" && slices.Contains(strings.Split(tail[2], ","), "name=systemd"):
		default:
			continue
		}
		mnt := unescapeMountinfo(fields[4])
		if !slices.Contains(roots, mnt) {
			roots = append(roots, mnt)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		return nil, errors.New("neither a cgroup2 nor a name=systemd cgroup hierarchy is mounted")
	}
	return roots, nil
}

var mountinfoEscape = regexp.MustCompile(`\\[0-7]{3}`)

func unescapeMountinfo(s string) string {
	return mountinfoEscape.ReplaceAllStringFunc(s, func(o string) string {
		n, _ := strconv.ParseUint(o[1:], 8, 8)
		return string(rune(n))
	})
}

var cgroupName = regexp.MustCompile(`^` + cgroupPrefix + `([0-9]+)-[0-9]+$`)

// makeCgroups removes the cgroups left by dead processes, then makes ours.
func (c *Container) makeCgroups() error {
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	cgroupSeq++ // one Boot at a time: lockBox is held
	name := fmt.Sprintf("%s%d-%d", cgroupPrefix, os.Getpid(), cgroupSeq)
	removeStaleCgroups(roots)
	for _, root := range roots {
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("make cgroup: %w", err)
		}
		c.cgroups = append(c.cgroups, dir)
	}
	return nil
}
