package dnsprobe

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
	"github.com/nodekeeper/nodekeeper/internal/kubelet"
)

// KubeletFlagsFile is where AKS (and other distributions' packages) keep
// kubelet's command-line flags, relative to the root file system; a
// --cluster-dns flag there wins over the config file, as in kubelet.
const KubeletFlagsFile = "etc/default/kubelet"

// maxServers bounds the servers taken from one file: kubelet's resolv.conf
// holds at most three name servers.
const maxServers = 3

// ClusterDNS finds kubelet's clusterDNS: the --cluster-dns flag of
// KubeletFlagsFile, else the clusterDNS list of the first kubelet config file
// that exists (kubelet.ConfigFiles, YAML or JSON). It returns the servers and
// the file they came from; none and "" when no file sets them. A file that
// cannot be read or parsed is an error naming it.
func ClusterDNS(h *hostfs.FS) ([]netip.AddrPort, string, error) {
	path := h.Root(KubeletFlagsFile)
	b, err := hostfs.ReadFile(path, nil)
	switch {
	case err == nil:
		if s, err := ParseKubeletFlags(b); err != nil {
			return nil, path, fmt.Errorf("%s: %w", path, err)
		} else if len(s) > 0 {
			return s, path, nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, path, err
	}
	for _, rel := range kubelet.ConfigFiles {
		path := h.Root(rel)
		b, err := hostfs.ReadFile(path, nil)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, path, err
		}
		s, err := ParseClusterDNS(b)
		if err != nil {
			return nil, path, fmt.Errorf("%s: %w", path, err)
		}
		if len(s) == 0 {
			return nil, "", nil
		}
		return s, path, nil
	}
	return nil, "", nil
}

// ParseClusterDNS reads the clusterDNS list of a KubeletConfiguration (YAML
// or JSON). No list is no servers, not an error; an entry that is not an IP
// address is.
func ParseClusterDNS(b []byte) ([]netip.AddrPort, error) {
	var cfg struct {
		ClusterDNS []string `yaml:"clusterDNS"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("not a kubelet configuration: %w", err)
	}
	return servers(cfg.ClusterDNS, "clusterDNS")
}

// ParseKubeletFlags reads --cluster-dns=A[,B] (or --cluster-dns A) from a
// file of kubelet flags such as KUBELET_FLAGS="... --cluster-dns=10.0.0.10
// ...". The last flag wins, as in kubelet; no flag is no servers.
func ParseKubeletFlags(b []byte) ([]netip.AddrPort, error) {
	var val string
	found := false
	for line := range bytes.Lines(b) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '#' {
			continue
		}
		f := strings.FieldsFunc(string(line), func(r rune) bool {
			return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '"' || r == '\'' || r == '='
		})
		// FieldsFunc splits on '=', so the flag and its value are always
		// two fields, whether written with '=' or a space.
		for i := 0; i < len(f); i++ {
			if f[i] == "--cluster-dns" || f[i] == "-cluster-dns" {
				found = true
				val = ""
				if i+1 < len(f) && !strings.HasPrefix(f[i+1], "-") {
					val = f[i+1]
					i++
				}
			}
		}
	}
	if !found {
		return nil, nil
	}
	if val == "" {
		return nil, errors.New("--cluster-dns has no value")
	}
	return servers(strings.Split(val, ","), "--cluster-dns")
}

// servers parses kubelet's list of DNS IPs (port 53).
func servers(list []string, what string) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("%s: %q is not an IP address", what, short(s))
		}
		if len(out) < maxServers {
			out = append(out, netip.AddrPortFrom(a.Unmap(), Port))
		}
	}
	return out, nil
}

// short keeps an error about a hostile file to one readable line.
func short(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
