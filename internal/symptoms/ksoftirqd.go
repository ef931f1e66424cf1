package symptoms

import (
	"bytes"
	"slices"
	"strconv"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// ksoftirqdThread is a CPU's ksoftirqd thread as found in /proc.
type ksoftirqdThread struct {
	pid       int
	comm      string // "ksoftirqd/N"
	statPath  string
	schedPath string
}

// ksoftirqdSignal reads the ksoftirqd thread of a saturated CPU: two small
// files, only for CPUs already flagged. The PID comes from a cache filled by
// one search of /proc (at most once per ksoftirqdRescan).
func (w *Watcher) ksoftirqdSignal(snap *Snapshot, cpu int) *KsoftirqdSignal {
	th, ok := w.ksoftThreads[cpu]
	if !ok {
		w.scanKsoftirqd(snap.Time)
		if th, ok = w.ksoftThreads[cpu]; !ok {
			return nil
		}
	}
	b, err := read(th.statPath, &w.smallBuf)
	if err != nil || b == nil {
		delete(w.ksoftThreads, cpu)
		return nil
	}
	st, err := ParsePidStat(b)
	if err != nil || st.Comm != th.comm { // the PID was reused
		delete(w.ksoftThreads, cpu)
		return nil
	}
	cur := threadSample{pid: th.pid, t: snap.Time, ticks: st.UTime + st.STime}
	haveWait := false
	if b, err := read(th.schedPath, &w.smallBuf); err == nil && b != nil {
		if ss, err := ParseSchedstat(b); err == nil {
			cur.waitNs, haveWait = ss.WaitNs, true
		}
	}
	sig := &KsoftirqdSignal{PID: th.pid}
	if prev, ok := w.ksoftPrev[cpu]; ok && prev.pid == cur.pid && cur.t.After(prev.t) && cur.ticks >= prev.ticks {
		dt := cur.t.Sub(prev.t)
		sig.Measured = true
		sig.CPUShare = float64(cur.ticks-prev.ticks) / userHZ / dt.Seconds()
		if haveWait && prev.haveWait && cur.waitNs >= prev.waitNs {
			sig.RunqWaitShare = float64(cur.waitNs-prev.waitNs) / float64(dt.Nanoseconds())
		}
	}
	cur.haveWait = haveWait
	w.ksoftPrev[cpu] = cur
	return sig
}

// ksoftirqdDrop forgets the measurements of CPUs not in keep (ascending).
func (w *Watcher) ksoftirqdDrop(keep []int) {
	for cpu := range w.ksoftPrev {
		if _, found := slices.BinarySearch(keep, cpu); !found {
			delete(w.ksoftPrev, cpu)
		}
	}
}

// scanKsoftirqd finds the ksoftirqd/N threads by their comm: among the
// children of kthreadd when the kernel lists them, else among all PIDs in
// ascending order (kernel threads of boot CPUs have low PIDs), stopping once
// every online CPU's thread is known.
func (w *Watcher) scanKsoftirqd(now time.Time) {
	if w.ksoftScanDone && now.Sub(w.ksoftScanned) < ksoftirqdRescan && !now.Before(w.ksoftScanned) {
		return
	}
	w.ksoftScanned, w.ksoftScanDone = now, true
	w.ksoftScans++
	if w.ksoftThreads == nil {
		w.ksoftThreads = map[int]ksoftirqdThread{}
	}
	want := len(w.online)
	found := func() bool { return len(w.ksoftThreads) >= want }
	look := func(pids []int) {
		for _, pid := range pids {
			if found() {
				return
			}
			w.lookKsoftirqd(pid)
		}
	}
	var buf []byte
	if b, err := hostfs.ReadFile(w.fs.Proc("2", "task", "2", "children"), buf); err == nil {
		look(parsePIDs(b))
	}
	if found() {
		return
	}
	names, err := hostfs.ReadDirNames(w.fs.Proc())
	if err != nil {
		return
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	look(pids)
}

func (w *Watcher) lookKsoftirqd(pid int) {
	ps := strconv.Itoa(pid)
	b, err := read(w.fs.Proc(ps, "comm"), &w.smallBuf)
	if err != nil || b == nil {
		return
	}
	comm := bytes.TrimSpace(b)
	num, ok := bytes.CutPrefix(comm, []byte("ksoftirqd/"))
	if !ok {
		return
	}
	cpu, ok := cpuNumber(num)
	if !ok {
		return
	}
	w.ksoftThreads[cpu] = ksoftirqdThread{
		pid:       pid,
		comm:      string(comm),
		statPath:  w.fs.Proc(ps, "stat"),
		schedPath: w.fs.Proc(ps, "schedstat"),
	}
}

// parsePIDs parses a space-separated list of PIDs (a children file).
func parsePIDs(b []byte) []int {
	var out []int
	b = bytes.ReplaceAll(b, []byte{'\n'}, []byte{' '})
	for i := 0; ; {
		var f []byte
		f, i = field(b, i)
		if len(f) == 0 {
			return out
		}
		if n, ok := dec(f); ok && n > 0 && n <= 1<<22 {
			out = append(out, int(n))
		}
	}
}
