package packaging_test

// The installer image in a real container runtime on a real systemd host: the
// image that `make image` builds (an OCI layout, no registry) runs in podman
// inside the test VM, privileged and with the VM's root, D-Bus and the
// override mounted exactly as the DaemonSet in deploy/kubernetes says — the
// podman arguments are derived from `kubectl kustomize`'s rendering, so the
// manifest and this test cannot drift apart. nodekeeper must end up installed,
// enabled and active as the VM's own systemd unit (not in the container), with
// the packaged hardened unit unchanged (no drop-in but its generator's); the readiness
// probe must pass; a second pod restarts nothing; the uninstall DaemonSet's
// pod removes the package.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/nodekeeper/nodekeeper/internal/testenv/vm"
)

// k8sObject is the part of a rendered object this test maps onto podman. What
// podman cannot be told from these fields (a command, env, another volume
// type, an unknown propagation or unit) makes podmanRun fail, so a manifest
// change this test cannot reproduce is noticed instead of silently ignored.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Template struct {
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostPID     bool        `yaml:"hostPID"`
	HostNetwork bool        `yaml:"hostNetwork"`
	HostIPC     bool        `yaml:"hostIPC"`
	Containers  []container `yaml:"containers"`
	Volumes     []struct {
		Name     string `yaml:"name"`
		HostPath *struct {
			Path string `yaml:"path"`
		} `yaml:"hostPath"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
	} `yaml:"volumes"`
}

type container struct {
	Name            string   `yaml:"name"`
	Command         []string `yaml:"command"`
	Args            []string `yaml:"args"`
	Env             []any    `yaml:"env"`
	SecurityContext struct {
		Privileged bool `yaml:"privileged"`
	} `yaml:"securityContext"`
	ReadinessProbe *struct {
		Exec *struct {
			Command []string `yaml:"command"`
		} `yaml:"exec"`
	} `yaml:"readinessProbe"`
	Resources struct {
		Limits map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name             string `yaml:"name"`
		MountPath        string `yaml:"mountPath"`
		ReadOnly         bool   `yaml:"readOnly"`
		MountPropagation string `yaml:"mountPropagation"`
	} `yaml:"volumeMounts"`
}

// podRun is how podman runs a DaemonSet's pod: its arguments (before the
// image), the readiness probe's command, and the ConfigMap files the pod
// mounts, by their path on the payload disk.
type podRun struct {
	Args    []string
	Ready   []string
	Payload map[string][]byte
}

// renderManifest runs `kubectl kustomize` on a directory of deploy/kubernetes.
func renderManifest(t *testing.T, dir string) []k8sObject {
	t.Helper()
	need(t, []string{"kubectl"}, "kubectl")
	out, err := exec.Command("kubectl", "kustomize", repo(filepath.Join("deploy", "kubernetes", dir))).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var objs []k8sObject
	dec := yaml.NewDecoder(bytes.NewReader(out))
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("rendering of %s: %v", dir, err)
		}
		objs = append(objs, o)
	}
	return objs
}

// podmanRun derives the podman arguments of the one DaemonSet in objs. The
// pod's network is none (the installer uses none); payloadDir is where the
// payload disk is mounted in the guest.
func podmanRun(objs []k8sObject, payloadDir string) (podRun, error) {
	var ds *k8sObject
	cms := map[string]map[string]string{}
	for i, o := range objs {
		switch o.Kind {
		case "DaemonSet":
			if ds != nil {
				return podRun{}, fmt.Errorf("two DaemonSets: %s and %s", ds.Metadata.Name, o.Metadata.Name)
			}
			ds = &objs[i]
		case "ConfigMap":
			cms[o.Metadata.Name] = o.Data
		}
	}
	if ds == nil {
		return podRun{}, errors.New("no DaemonSet in the rendering")
	}
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		return podRun{}, fmt.Errorf("%d containers; this test runs one", len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Command) > 0 || len(c.Env) > 0 {
		return podRun{}, errors.New("the container sets command or env: map them onto podman here")
	}
	r := podRun{Payload: map[string][]byte{}}
	if c.SecurityContext.Privileged {
		r.Args = append(r.Args, "--privileged")
	}
	if pod.HostPID {
		r.Args = append(r.Args, "--pid=host")
	}
	if pod.HostIPC {
		r.Args = append(r.Args, "--ipc=host")
	}
	if pod.HostNetwork {
		r.Args = append(r.Args, "--network=host")
	} else {
		r.Args = append(r.Args, "--network=none")
	}
	if m := c.Resources.Limits["memory"]; m != "" {
		n, ok := strings.CutSuffix(m, "Mi")
		if !ok {
			return podRun{}, fmt.Errorf("memory limit %q: this test maps only Mi", m)
		}
		r.Args = append(r.Args, "--memory="+n+"m")
	}
	if cpu := c.Resources.Limits["cpu"]; cpu != "" {
		n, ok := strings.CutSuffix(cpu, "m")
		milli, err := strconv.Atoi(n)
		if !ok || err != nil {
			return podRun{}, fmt.Errorf("cpu limit %q: this test maps only millicores", cpu)
		}
		r.Args = append(r.Args, fmt.Sprintf("--cpus=%d.%03d", milli/1000, milli%1000))
	}
	for _, m := range c.VolumeMounts {
		var src, opts string
		for _, v := range pod.Volumes {
			if v.Name != m.Name {
				continue
			}
			switch {
			case v.HostPath != nil:
				src = v.HostPath.Path
			case v.ConfigMap != nil:
				data, ok := cms[v.ConfigMap.Name]
				if !ok {
					return podRun{}, fmt.Errorf("volume %s: ConfigMap %s is not in the rendering", v.Name, v.ConfigMap.Name)
				}
				for k, body := range data {
					r.Payload[filepath.Join("configmap", v.Name, k)] = []byte(body)
				}
				src = filepath.Join(payloadDir, "configmap", v.Name)
			default:
				return podRun{}, fmt.Errorf("volume %s: only hostPath and configMap volumes are mapped onto podman", v.Name)
			}
		}
		if src == "" {
			return podRun{}, fmt.Errorf("volumeMount %s names no volume", m.Name)
		}
		switch m.MountPropagation {
		case "", "None":
			opts = "rprivate"
		case "HostToContainer":
			opts = "rslave"
		case "Bidirectional":
			opts = "rshared"
		default:
			return podRun{}, fmt.Errorf("volumeMount %s: mountPropagation %q", m.Name, m.MountPropagation)
		}
		if m.ReadOnly {
			opts += ",ro"
		}
		r.Args = append(r.Args, "--volume="+src+":"+m.MountPath+":"+opts)
	}
	if c.ReadinessProbe != nil && c.ReadinessProbe.Exec != nil {
		r.Ready = c.ReadinessProbe.Exec.Command
	}
	for _, a := range append(append([]string{}, r.Args...), append(c.Args, r.Ready...)...) {
		if strings.ContainsAny(a, " \t\n'\"$") {
			return podRun{}, fmt.Errorf("argument %q: the guest script passes arguments as words", a)
		}
	}
	r.Args = append(r.Args, "IMAGE")
	r.Args = append(r.Args, c.Args...)
	return r, nil
}

func TestPodmanArgsFromManifest(t *testing.T) {
	inst, err := podmanRun(renderManifest(t, "."), "/payload")
	if err != nil {
		t.Fatal(err)
	}
	args := strings.Join(inst.Args, " ")
	for _, want := range []string{"--privileged", "--memory=256m", "--cpus=0.500", "--volume=/:/host:rslave", "--volume=/run/dbus:/run/dbus:rprivate",
		"--volume=/payload/configmap/override:/etc/nodekeeper-override:rprivate,ro", "IMAGE --host-root=/host"} {
		if !strings.Contains(args, want) {
			t.Errorf("podman arguments %q lack %q", args, want)
		}
	}
	if len(inst.Payload) != 1 || len(inst.Ready) == 0 {
		t.Errorf("payload %v, readiness %v: want the override file and a readiness command", inst.Payload, inst.Ready)
	}
	un, err := podmanRun(renderManifest(t, "uninstall"), "/payload")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(un.Args, " "), "--uninstall") {
		t.Errorf("uninstaller's podman arguments %q lack --uninstall", un.Args)
	}
	// What the derivation cannot map is an error, not silently dropped.
	bad := renderManifest(t, ".")
	for i := range bad {
		if bad[i].Kind == "DaemonSet" {
			bad[i].Spec.Template.Spec.Volumes[0].HostPath = nil
		}
	}
	if _, err := podmanRun(bad, "/payload"); err == nil {
		t.Error("a volume that is neither hostPath nor configMap was mapped")
	}
}

func TestVMInstallerImage(t *testing.T) {
	vm.Require(t)
	need(t, []string{"make", "git"}, "make", "git")
	dist := t.TempDir()
	mustRun(t, root, nil, "make", "image", "IMAGE_ARCHES=amd64", "DIST="+dist, "GO="+goCmd())
	payload := map[string][]byte{}
	layout := filepath.Join(dist, "image", "oci")
	err := filepath.WalkDir(layout, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(layout, p)
		payload[filepath.Join("oci", rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	inst, err := podmanRun(renderManifest(t, "."), "/payload")
	if err != nil {
		t.Fatal(err)
	}
	un, err := podmanRun(renderManifest(t, "uninstall"), "/payload")
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range inst.Payload {
		payload[k] = v
	}
	unit, err := os.ReadFile(repo("systemd/nodekeeper.service"))
	if err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	override := map[string]bool{}
	for _, body := range inst.Payload {
		override[sum(body)] = true
	}

	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Minute)
	defer cancel()
	res, err := vm.Run(t, ctx, vm.Options{CPUs: 2, OutputMiB: 16, Payload: payload, Timeout: 10 * time.Minute,
		Script: "testdata/vm_image.sh", Env: map[string]string{
			"RUN_ARGS":       strings.Join(inst.Args, " "),
			"READY":          strings.Join(inst.Ready, " "),
			"UNINSTALL_ARGS": strings.Join(un.Args, " "),
		}})
	if res == nil {
		t.Fatal(err)
	}
	t.Logf("payload output:\n%s", res.Output)
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"podman-run.txt", "installer.log", "installer2.log", "uninstaller.log", "nodekeeper-status.txt"} {
				t.Logf("%s:\n%s", f, res.Files[f])
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	o := vm.ParseOutput(res.Output)
	o.Report(t, res.ExitCode)
	o.Want(t, "pull_exit", "0", "image_arch", "amd64", "image_entrypoint", "/nodekeeper install")
	if v := o.One(t, "image_version"); !strings.Contains(v, "nodekeeper") {
		t.Errorf("the image's binary says %q to version", v)
	}
	o.Want(t, "run_exit", "0", "unit_active", "active", "unit_enabled", "enabled", "ready_ok", "1", "record_kept", "1",
		"unit_sha", sum(unit), "restarted", "no", "ready2_ok", "1", "uninstalled_ok", "1")
	// The packaged unit as shipped: its only drop-ins are the package's
	// generator's, none from the installer.
	for _, d := range strings.Fields(o.One(t, "unit_dropins")) {
		if !strings.HasPrefix(d, "/run/systemd/generator/nodekeeper.service.d/") {
			t.Errorf("nodekeeper.service has the drop-in %s: the installer must leave the hardened unit as packaged", d)
		}
	}
	if !strings.HasPrefix(o.One(t, "pkg"), "install ok installed ") {
		t.Errorf("package status %q, want installed", o.One(t, "pkg"))
	}
	if cg := o.One(t, "daemon_cgroup"); !strings.HasSuffix(cg, "/system.slice/nodekeeper.service") {
		t.Errorf("the daemon runs in cgroup %q, want the host's nodekeeper.service (not the container)", cg)
	}
	var files []string
	for _, line := range o.Values("configd") {
		name, h, _ := strings.Cut(line, " ")
		files = append(files, name)
		if override[h] {
			override[h] = false
		}
	}
	sort.Strings(files)
	for h, missing := range override {
		if missing {
			t.Errorf("no file of /etc/nodekeeper/config.d (%v) holds the ConfigMap's override (sha256 %s)", files, h)
		}
	}
}
