package irq

import "strings"

// QueueName tells whether an IRQ handler name belongs to a NIC queue and, if
// so, returns the queue's short name. Control, async, config and link vectors
// are not queues: they carry no packets and irqbalance does not spread them
// for throughput.
//
//	mlx5_comp3@pci:0001:00:02.0  → comp3     (mlx5_async*, mlx5_pages* are control)
//	mana_q5@pci:7870:00:00.0     → q5        (mana_hwc* is the control channel)
//	virtio2-input.0              → input.0   (virtioN-config / -control are control)
//	eth0-TxRx-3, i40e-eth0-TxRx-3, ice-eth0-TxRx-3 → TxRx-3 (Intel combined vectors)
//	eth0-rx-2 / eth0-tx-2        → rx-2 / tx-2 (igb, e1000e, bnxt with split vectors)
//	eth0-Tx-Rx-1                 → Tx-Rx-1  (AWS ENA I/O queues; ena-mgmnt is control)
//	gve-ntfy-blk4@pci:…          → ntfy-blk4 (Google gVNIC notification blocks)
func QueueName(name string) (string, bool) {
	switch {
	case strings.HasPrefix(name, "mlx5_comp"):
		return indexed(name[len("mlx5_"):], len("comp"), '@')
	case strings.HasPrefix(name, "mana_q"):
		return indexed(name[len("mana_"):], len("q"), '@')
	case strings.HasPrefix(name, "gve-ntfy-blk"):
		return indexed(name[len("gve-"):], len("ntfy-blk"), '@')
	case strings.HasPrefix(name, "virtio"):
		_, rest, ok := strings.Cut(name, "-")
		if !ok || !digits(name[len("virtio"):len(name)-len(rest)-1]) {
			return "", false
		}
		if strings.HasPrefix(rest, "input.") || strings.HasPrefix(rest, "output.") {
			_, n, _ := strings.Cut(rest, ".")
			if digits(n) {
				return rest, true
			}
		}
		return "", false
	}
	for _, suffix := range []string{"-TxRx-", "-Tx-Rx-", "-rx-", "-tx-"} {
		if i := strings.LastIndex(name, suffix); i > 0 && digits(name[i+len(suffix):]) {
			return name[i+1:], true
		}
	}
	return "", false
}

// indexed accepts s = word<digits>[sep…] with the word len(word) long and
// returns word<digits>.
func indexed(s string, word int, sep byte) (string, bool) {
	end := strings.IndexByte(s, sep)
	if end < 0 {
		end = len(s)
	}
	if !digits(s[word:end]) {
		return "", false
	}
	return s[:end], true
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// queueIndex is the number at the end of a queue name (-1 if none), for
// ordering queues naturally (q2 before q10).
func queueIndex(q string) int {
	i := len(q)
	for i > 0 && q[i-1] >= '0' && q[i-1] <= '9' {
		i--
	}
	n := -1
	for _, c := range q[i:] {
		if n < 0 {
			n = 0
		}
		n = n*10 + int(c-'0')
		if n > 1<<20 {
			return 1 << 20
		}
	}
	return n
}
