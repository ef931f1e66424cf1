package kubelet

import (
	"errors"
	"fmt"
	"io/fs"

	"gopkg.in/yaml.v3"

	"github.com/nodekeeper/nodekeeper/internal/cpuset"
	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

// ConfigFiles are where kubelet's --config file usually is, relative to the
// root file system: kubeadm and Cluster API, then AKS's JSON file.
var ConfigFiles = []string{
	"var/lib/kubelet/config.yaml",
	"etc/kubernetes/kubelet/config.yaml",
	"etc/kubernetes/kubelet-config.yaml",
	"etc/default/kubeletconfig.json",
}

// Reserved reads reservedSystemCPUs from the first kubelet config file that
// exists (YAML or JSON). An empty set and path "" mean no file sets it.
func Reserved(h *hostfs.FS) (cpuset.Set, string, error) {
	for _, rel := range ConfigFiles {
		path := h.Root(rel)
		b, err := hostfs.ReadFile(path, nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return cpuset.Set{}, path, err
		}
		s, err := ParseReserved(b)
		if err != nil {
			return cpuset.Set{}, path, fmt.Errorf("%s: %w", path, err)
		}
		return s, path, nil
	}
	return cpuset.Set{}, "", nil
}

// ParseReserved reads the reservedSystemCPUs field of a KubeletConfiguration.
func ParseReserved(b []byte) (cpuset.Set, error) {
	var cfg struct {
		ReservedSystemCPUs string `yaml:"reservedSystemCPUs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return cpuset.Set{}, fmt.Errorf("not a kubelet configuration: %w", err)
	}
	s, err := cpuset.ParseList(cfg.ReservedSystemCPUs)
	if err != nil {
		return cpuset.Set{}, fmt.Errorf("reservedSystemCPUs: %w", err)
	}
	return s, nil
}
