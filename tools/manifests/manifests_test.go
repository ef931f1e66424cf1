package manifests_test

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// root is the repository's top directory (the test runs in tools/manifests).
var root = func() string {
	p, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return p
}()

// render runs `kubectl kustomize` on a directory of deploy/kubernetes.
func render(t *testing.T, dir string) []byte {
	t.Helper()
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		if testing.Short() {
			t.Skip("kubectl is not installed (apt-get install kubectl): the manifests cannot be rendered")
		}
		t.Fatal("kubectl is not installed (apt-get install kubectl): the manifests cannot be rendered")
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", filepath.Join(root, "deploy", "kubernetes", dir))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return out
}

// objects is what a rendering holds, decoded.
type objects struct {
	Namespaces []corev1.Namespace
	ConfigMaps []corev1.ConfigMap
	DaemonSets []appsv1.DaemonSet
}

// decode splits a multi-document rendering and decodes each object strictly
// into the type its apiVersion and kind name; an unknown kind is an error.
func decode(data []byte) (objects, error) {
	var o objects
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			return o, fmt.Errorf("object %d: %w", i, err)
		}
		var err error
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Namespace":
			var v corev1.Namespace
			err = yaml.UnmarshalStrict([]byte(doc), &v)
			o.Namespaces = append(o.Namespaces, v)
		case "v1 ConfigMap":
			var v corev1.ConfigMap
			err = yaml.UnmarshalStrict([]byte(doc), &v)
			o.ConfigMaps = append(o.ConfigMaps, v)
		case "apps/v1 DaemonSet":
			var v appsv1.DaemonSet
			err = yaml.UnmarshalStrict([]byte(doc), &v)
			o.DaemonSets = append(o.DaemonSets, v)
		default:
			return o, fmt.Errorf("object %d: %s %s is not a kind this test knows: add it", i, tm.APIVersion, tm.Kind)
		}
		if err != nil {
			return o, fmt.Errorf("object %d (%s): %w", i, tm.Kind, err)
		}
	}
	return o, nil
}

func TestDecodeIsStrict(t *testing.T) {
	for name, doc := range map[string]string{
		"misspelt field": "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailible: 1}}\n",
		"unknown kind":   "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n",
		"wrong type":     "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: [a]}\n",
		"duplicate key":  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\ndata: {c: d}\n",
	} {
		if _, err := decode([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
}

// installerPod checks what both DaemonSets' pods need to install onto (or
// remove from) a managed node and returns the container.
func installerPod(t *testing.T, ds appsv1.DaemonSet) corev1.Container {
	t.Helper()
	if ds.Namespace != "nodekeeper" {
		t.Errorf("%s: namespace %q, want nodekeeper (the one exempted from Pod Security)", ds.Name, ds.Namespace)
	}
	if got := ds.Spec.UpdateStrategy; got.Type != appsv1.RollingUpdateDaemonSetStrategyType || got.RollingUpdate == nil || got.RollingUpdate.MaxUnavailable == nil {
		t.Errorf("%s: update strategy %+v, want RollingUpdate with maxUnavailable", ds.Name, got)
	}
	sel, tmpl := ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels
	for k, v := range sel {
		if tmpl[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod template's labels %v", ds.Name, k, v, tmpl)
		}
	}
	pod := ds.Spec.Template.Spec
	if pod.NodeSelector["kubernetes.io/os"] != "linux" || len(pod.NodeSelector) != 1 {
		t.Errorf("%s: nodeSelector %v, want only kubernetes.io/os=linux", ds.Name, pod.NodeSelector)
	}
	if !slices.ContainsFunc(pod.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Errorf("%s: tolerations %v do not tolerate every taint (operator Exists, no key, no effect)", ds.Name, pod.Tolerations)
	}
	if pod.PriorityClassName != "system-node-critical" {
		t.Errorf("%s: priorityClassName %q, want system-node-critical", ds.Name, pod.PriorityClassName)
	}
	if pod.HostPID || pod.HostNetwork || pod.HostIPC {
		t.Errorf("%s: host namespaces shared; the installer needs only the host root and D-Bus", ds.Name)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("%s: the pod gets a service account token; it never talks to the API server", ds.Name)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers, want the installer only", ds.Name, len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Errorf("%s: container is not privileged", ds.Name)
	}
	if len(c.Command) != 0 {
		t.Errorf("%s: command %v overrides the image's entrypoint (/nodekeeper install)", ds.Name, c.Command)
	}
	if !slices.Contains(c.Args, "--host-root=/host") {
		t.Errorf("%s: args %v lack --host-root=/host", ds.Name, c.Args)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	hostPaths := map[string]string{} // mountPath -> host path
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("%s: volumeMount %s names no volume", ds.Name, m.Name)
			continue
		}
		if v.HostPath != nil {
			hostPaths[m.MountPath] = v.HostPath.Path
			if m.ReadOnly {
				t.Errorf("%s: host path %s is read-only; the installer writes there", ds.Name, v.HostPath.Path)
			}
		}
	}
	if hostPaths["/host"] != "/" {
		t.Errorf("%s: the host root is not mounted at /host (host paths: %v)", ds.Name, hostPaths)
	}
	if hostPaths["/run/dbus"] != "/run/dbus" {
		t.Errorf("%s: the host's D-Bus is not mounted at /run/dbus (host paths: %v)", ds.Name, hostPaths)
	}
	r := c.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := r.Requests[name], r.Limits[name]
		if req.IsZero() || lim.IsZero() {
			t.Errorf("%s: %s request %v / limit %v: want both set", ds.Name, name, req.String(), lim.String())
		}
	}
	if cpu := r.Requests[corev1.ResourceCPU]; cpu.Cmp(resource.MustParse("50m")) > 0 {
		t.Errorf("%s: cpu request %s; the installer is idle after its run: keep it small", ds.Name, cpu.String())
	}
	if mem := r.Requests[corev1.ResourceMemory]; mem.Cmp(resource.MustParse("64Mi")) > 0 {
		t.Errorf("%s: memory request %s; keep it small", ds.Name, mem.String())
	}
	p := c.ReadinessProbe
	if p == nil || p.Exec == nil || len(p.Exec.Command) < 2 || p.Exec.Command[0] != "/nodekeeper" || p.Exec.Command[1] != "install" {
		t.Errorf("%s: readinessProbe %+v, want the installer's readiness check (/nodekeeper install ...)", ds.Name, p)
	}
	return c
}

func TestInstallRenders(t *testing.T) {
	o, err := decode(render(t, "."))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Namespaces) != 1 || len(o.ConfigMaps) != 1 || len(o.DaemonSets) != 1 {
		t.Fatalf("rendered %d namespaces, %d config maps, %d daemon sets; want one of each",
			len(o.Namespaces), len(o.ConfigMaps), len(o.DaemonSets))
	}
	ns := o.Namespaces[0]
	if ns.Name != "nodekeeper" || ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s labels %v: want nodekeeper with pod-security.kubernetes.io/enforce=privileged", ns.Name, ns.Labels)
	}
	ds := o.DaemonSets[0]
	c := installerPod(t, ds)
	if slices.Contains(c.Args, "--uninstall") {
		t.Errorf("the installer runs with --uninstall: %v", c.Args)
	}
	cm := o.ConfigMaps[0]
	if cm.Namespace != "nodekeeper" || len(cm.Data) != 1 {
		t.Errorf("config map %s/%s holds %d files, want one override in nodekeeper", cm.Namespace, cm.Name, len(cm.Data))
	}
	for name := range cm.Data {
		if !strings.HasSuffix(name, ".yaml") {
			t.Errorf("config map key %q: config.d reads only *.yaml", name)
		}
	}
	// The override reaches the installer: a configMap volume naming the
	// generated (hashed) name, mounted where --config-from points.
	var mounted string
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == cm.Name {
			for _, m := range c.VolumeMounts {
				if m.Name == v.Name {
					mounted = m.MountPath
				}
			}
		}
	}
	if mounted == "" || !slices.Contains(c.Args, "--config-from="+mounted) {
		t.Errorf("config map %s is not mounted where --config-from points (mounted at %q, args %v)", cm.Name, mounted, c.Args)
	}
}

func TestUninstallRenders(t *testing.T) {
	o, err := decode(render(t, "uninstall"))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.DaemonSets) != 1 || len(o.Namespaces) != 0 || len(o.ConfigMaps) != 0 {
		t.Fatalf("rendered %d daemon sets, %d namespaces, %d config maps; want the uninstaller only (the namespace stays until it is done)",
			len(o.DaemonSets), len(o.Namespaces), len(o.ConfigMaps))
	}
	c := installerPod(t, o.DaemonSets[0])
	if !slices.Contains(c.Args, "--uninstall") {
		t.Errorf("the uninstaller runs without --uninstall: %v", c.Args)
	}
	inst, err := decode(render(t, "."))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Image, inst.DaemonSets[0].Spec.Template.Spec.Containers[0].Image; got != want {
		t.Errorf("the uninstaller runs image %s, the installer %s: they must be the same", got, want)
	}
	if o.DaemonSets[0].Name == inst.DaemonSets[0].Name {
		t.Errorf("both DaemonSets are named %s", o.DaemonSets[0].Name)
	}
}
