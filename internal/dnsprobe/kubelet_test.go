package dnsprobe

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/nodekeeper/nodekeeper/internal/hostfs"
)

func fixture(t *testing.T, dir string) *hostfs.FS {
	t.Helper()
	h, err := hostfs.New(hostfs.Paths{Root: "testdata/" + dir, Sys: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func aps(ss ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range ss {
		out = append(out, netip.MustParseAddrPort(s))
	}
	return out
}

func TestClusterDNS(t *testing.T) {
	for _, tc := range []struct {
		dir, file string
		want      []netip.AddrPort
		err       string
	}{
		{dir: "kubeadm", file: "var/lib/kubelet/config.yaml", want: aps("10.96.0.10:53")},
		// AKS: the flag wins over a config file, as in kubelet.
		{dir: "aks", file: "etc/default/kubelet", want: aps("10.0.0.10:53")},
		// AKS with a JSON config file and flags that set no --cluster-dns.
		{dir: "aksjson", file: "etc/default/kubeletconfig.json", want: aps("10.0.0.10:53", "[fd00:10::a]:53")},
		{dir: "none"},
		{dir: "missing"},
		{dir: "bad", file: "var/lib/kubelet/config.yaml", err: `clusterDNS: "kube-dns.kube-system" is not an IP address`},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			h := fixture(t, tc.dir)
			got, file, err := ClusterDNS(h)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), tc.file) {
					t.Errorf("error %v; want one naming %s and saying %q", err, tc.file, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("servers %v, %v; want %v", got, err, tc.want)
			}
			if want := ""; tc.file != "" {
				want = h.Root(tc.file)
				if file != want {
					t.Errorf("source %q, want %q", file, want)
				}
			} else if file != want {
				t.Errorf("source %q without servers", file)
			}
		})
	}
}

func TestParseKubeletFlags(t *testing.T) {
	for in, want := range map[string][]netip.AddrPort{
		"KUBELET_FLAGS=--cluster-dns=10.0.0.10":                       aps("10.0.0.10:53"),
		`KUBELET_FLAGS="--v=2 --cluster-dns 10.0.0.10,10.0.0.11 --x"`: aps("10.0.0.10:53", "10.0.0.11:53"),
		"A=--cluster-dns=10.0.0.1\nB=--cluster-dns=10.0.0.2\n":        aps("10.0.0.2:53"), // the last wins
		"# --cluster-dns=10.0.0.1\nKUBELET_FLAGS=--max-pods=30\n":     nil,
		"--cluster-dns=1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4":               aps("1.1.1.1:53", "2.2.2.2:53", "3.3.3.3:53"),
		"--cluster-dns=::ffff:10.0.0.10":                              aps("10.0.0.10:53"),
	} {
		got, err := ParseKubeletFlags([]byte(in))
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"--cluster-dns=", "--cluster-dns --max-pods=3", "--cluster-dns=10.0.0.10%eth0", "--cluster-dns=dns"} {
		if got, err := ParseKubeletFlags([]byte(in)); err == nil {
			t.Errorf("%q: %v without an error", in, got)
		}
	}
}

func TestParseServer(t *testing.T) {
	for in, want := range map[string]string{"10.0.0.10": "10.0.0.10:53", " 10.0.0.10:5353 ": "10.0.0.10:5353",
		"fd00::a": "[fd00::a]:53", "[fd00::a]:54": "[fd00::a]:54"} {
		if got, err := ParseServer(in); err != nil || got.String() != want {
			t.Errorf("%q: %v, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"", "dns", "10.0.0.10:0", "fe80::1%eth0", "10.0.0.10:99999"} {
		if got, err := ParseServer(in); err == nil {
			t.Errorf("%q: %v without an error", in, got)
		}
	}
	if s := ServerString(netip.MustParseAddrPort("[fd00::a]:5353")); s != "[fd00::a]:5353" {
		t.Error(s)
	}
}

// The parsers of kubelet's files never panic, and what they return is
// always a usable server list.
func FuzzParseClusterDNS(f *testing.F) {
	for _, s := range []string{"clusterDNS: [10.0.0.10]", `{"clusterDNS":["10.0.0.10","fd00::a"]}`, "clusterDNS: 3",
		"clusterDNS:\n- a\n- ''\n", "&a [*a]", "clusterDNS: [\"1.2.3.4%x\"]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseClusterDNS(b)
		checkParsed(t, got, err)
	})
}

func FuzzParseKubeletFlags(f *testing.F) {
	for _, s := range []string{"KUBELET_FLAGS=--cluster-dns=10.0.0.10", "--cluster-dns", "--cluster-dns='a,b'", "#\n--cluster-dns=::1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseKubeletFlags(b)
		checkParsed(t, got, err)
	})
}

func checkParsed(t *testing.T, got []netip.AddrPort, err error) {
	t.Helper()
	if err != nil {
		if got != nil {
			t.Errorf("servers %v with an error", got)
		}
		return
	}
	if len(got) > maxServers {
		t.Errorf("%d servers", len(got))
	}
	for _, s := range got {
		if !s.IsValid() || s.Port() != Port || s.Addr().Zone() != "" || s.Addr().Is4In6() {
			t.Errorf("server %v", s)
		}
	}
}
