// Command hostfixture writes a fake host tree for benchmarks that run the
// nodekeeper binary itself (scripts/startup-bench.sh), and prints the global
// flags that point nodekeeper at it.
//
//	hostfixture DIR    the 192-CPU Azure node: 900 other IRQs, eth0 (netvsc)
//	                   with a 64-queue mlx5 VF, as in the CLI's large-node test
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nodekeeper/nodekeeper/internal/testenv/hostfixture"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: hostfixture DIR")
		os.Exit(2)
	}
	h := hostfixture.Host{CPUs: 192, OtherIRQs: 900, NICs: []hostfixture.NIC{{Name: "eth0", Driver: "hv_netvsc",
		VF: &hostfixture.NIC{Name: "enP1s1", Driver: "mlx5_core", Queues: 64, NUMANode: -1}}}}
	p, err := h.Build(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostfixture:", err)
		os.Exit(1)
	}
	fmt.Println(strings.Join([]string{"--path.procfs", p.Proc, "--path.sysfs", p.Sys, "--path.cgroupfs", p.Cgroup,
		"--path.rootfs", p.Root, "--config", filepath.Join(p.Root, "etc", "nodekeeper", "config.yaml")}, " "))
}
