// Package configs holds no code. Its tests keep the monitoring files shipped
// here honest: the node-problem-detector plugin config runs checks that exist,
// with timeouts it can keep; the Prometheus alert rules pass promtool, have a
// unit test firing and not firing for every alert; and the alert rules and the
// Grafana dashboard query only metrics (and labels and label values) the
// daemon exports.
package configs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/latency"

	"github.com/nodekeeper/nodekeeper/internal/ctdrops"

	"github.com/nodekeeper/nodekeeper/internal/snat"

	"gopkg.in/yaml.v3"

	"github.com/nodekeeper/nodekeeper/internal/check"
	"github.com/nodekeeper/nodekeeper/internal/compaction"
	"github.com/nodekeeper/nodekeeper/internal/dnsprobe"
	"github.com/nodekeeper/nodekeeper/internal/freeze"
	"github.com/nodekeeper/nodekeeper/internal/irq"
	"github.com/nodekeeper/nodekeeper/internal/irqbalance"
	"github.com/nodekeeper/nodekeeper/internal/kubelet"
	"github.com/nodekeeper/nodekeeper/internal/metrics"
	"github.com/nodekeeper/nodekeeper/internal/policy"
	"github.com/nodekeeper/nodekeeper/internal/symptoms"
	"github.com/nodekeeper/nodekeeper/internal/testenv/layer"
)

const (
	npdFile       = "node-problem-detector/nodekeeper-monitor.json"
	rulesFile     = "prometheus/nodekeeper-alerts.yaml"
	ruleTestsFile = "prometheus/nodekeeper-alerts.test.yaml"
	dashboardFile = "grafana/nodekeeper-fleet.json"

	// checkLineMax is what `nodekeeper check` promises for its text output.
	checkLineMax = 80
)

// checkNames are the names `nodekeeper check <name>` takes, one per check of
// the contract.
var checkNames = []string{string(irq.Name), string(kubelet.Name), string(compaction.CheckName), string(symptoms.CheckName), string(snat.CheckName), string(ctdrops.CheckName), string(latency.Name),
	string(dnsprobe.CheckName)}

// labelValues are the contract's enumerations, for the labels that have one.
var labelValues = map[string][]string{
	"check":  checkNames,
	"status": {string(check.OK), string(check.Problem), string(check.Unknown)},
	"action": strs(irqbalance.ActionRestart, irqbalance.ActionSighup, irq.ActionSpread,
		kubelet.ActionPin, kubelet.ActionUnpin, compaction.Action),
	"result":  strs(policy.Results...),
	"outcome": strs(freeze.Outcomes...),
	"source":  strs(freeze.SourceClock, freeze.SourceIMDS),
	"reason":  strs(compaction.ReasonFragmentation, compaction.ReasonSafety),
	"type": {metrics.EventTypeFreeze, metrics.EventTypeReboot, metrics.EventTypeRedeploy,
		metrics.EventTypePreempt, metrics.EventTypeTerminate, metrics.EventTypeOther},
}

// targetLabels are added by Prometheus to every series it scrapes.
var targetLabels = []string{"job", "instance"}

// beyondContract are metrics the daemon exports that the design's metrics
// table does not list; alert rules stay on the table.
var beyondContract = map[string]bool{"nodekeeper_compaction_duration_seconds": true}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ---------------------------------------------------------------------------
// node-problem-detector

// npdConfig mirrors node-problem-detector's custom plugin monitor config
// (pkg/custompluginmonitor/types); unknown fields are errors.
type npdConfig struct {
	Plugin       string `json:"plugin"`
	PluginConfig struct {
		InvokeInterval                          string `json:"invoke_interval"`
		Timeout                                 string `json:"timeout"`
		MaxOutputLength                         *int   `json:"max_output_length"`
		Concurrency                             *int   `json:"concurrency"`
		EnableMessageChangeBasedConditionUpdate bool   `json:"enable_message_change_based_condition_update"`
		SkipInitialStatus                       bool   `json:"skip_initial_status"`
	} `json:"pluginConfig"`
	Source           string `json:"source"`
	MetricsReporting *bool  `json:"metricsReporting"`
	Conditions       []struct {
		Type    string `json:"type"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	} `json:"conditions"`
	Rules []struct {
		Type           string   `json:"type"`
		Condition      string   `json:"condition"`
		Reason         string   `json:"reason"`
		Path           string   `json:"path"`
		Args           []string `json:"args"`
		Timeout        string   `json:"timeout"`
		InvokeInterval string   `json:"invoke_interval"`
	} `json:"rules"`
}

// duration parses d, or returns def when d is empty (node-problem-detector's
// defaults).
func duration(t *testing.T, what, d string, def time.Duration) time.Duration {
	t.Helper()
	if d == "" {
		return def
	}
	v, err := time.ParseDuration(d)
	if err != nil || v <= 0 {
		t.Fatalf("%s %q: not a positive duration", what, d)
	}
	return v
}

var camelCase = regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`)

func TestNPDMonitor(t *testing.T) {
	dec := json.NewDecoder(strings.NewReader(string(readFile(t, npdFile))))
	dec.DisallowUnknownFields()
	var c npdConfig
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("%s: %v", npdFile, err)
	}
	if c.Plugin != "custom" {
		t.Errorf("plugin %q: node-problem-detector runs only \"custom\"", c.Plugin)
	}
	if c.Source != "nodekeeper-monitor" {
		t.Errorf("source %q, want nodekeeper-monitor", c.Source)
	}

	// node-problem-detector's defaults: 30s, 5s, 80, 3.
	interval := duration(t, "invoke_interval", c.PluginConfig.InvokeInterval, 30*time.Second)
	timeout := duration(t, "timeout", c.PluginConfig.Timeout, 5*time.Second)
	maxOut, concurrency := 80, 3
	if c.PluginConfig.MaxOutputLength != nil {
		maxOut = *c.PluginConfig.MaxOutputLength
	}
	if c.PluginConfig.Concurrency != nil {
		concurrency = *c.PluginConfig.Concurrency
	}
	if maxOut < checkLineMax {
		t.Errorf("max_output_length %d cuts the check's message (up to %d bytes)", maxOut, checkLineMax)
	}
	if timeout > interval {
		t.Errorf("timeout %v is longer than invoke_interval %v", timeout, interval)
	}
	if concurrency < 1 {
		t.Errorf("concurrency %d: no plugin would run", concurrency)
	}

	conds := map[string]string{} // type → default reason
	for _, cd := range c.Conditions {
		if !camelCase.MatchString(cd.Type) || !camelCase.MatchString(cd.Reason) {
			t.Errorf("condition %q reason %q: want UpperCamelCase", cd.Type, cd.Reason)
		}
		if _, dup := conds[cd.Type]; dup {
			t.Errorf("condition %q defined twice", cd.Type)
		}
		if cd.Message == "" || len(cd.Message) > maxOut {
			t.Errorf("condition %q: default message must be 1 to %d bytes, is %d", cd.Type, maxOut, len(cd.Message))
		}
		conds[cd.Type] = cd.Reason
	}

	usedChecks := map[string]int{}
	usedConds := map[string]int{}
	var longest time.Duration // the longest rule timeout
	for i, r := range c.Rules {
		name := fmt.Sprintf("rule %d (%s)", i, strings.Join(r.Args, " "))
		if r.Type != "permanent" {
			t.Errorf("%s: type %q, want permanent (a node condition)", name, r.Type)
		}
		def, ok := conds[r.Condition]
		switch {
		case !ok:
			t.Errorf("%s: condition %q is not among the conditions", name, r.Condition)
		case !camelCase.MatchString(r.Reason) || r.Reason == def:
			t.Errorf("%s: reason %q must be UpperCamelCase and differ from the condition's default reason", name, r.Reason)
		}
		usedConds[r.Condition]++
		if r.Path != "/usr/bin/nodekeeper" {
			t.Errorf("%s: path %q, want /usr/bin/nodekeeper (where the package installs it)", name, r.Path)
		}
		if len(r.Args) < 2 || r.Args[0] != "check" || !slices.Contains(checkNames, r.Args[1]) {
			t.Errorf("%s: args %q, want [check <%s>]", name, r.Args, strings.Join(checkNames, "|"))
		} else {
			usedChecks[r.Args[1]]++
		}
		if slices.Contains(r.Args, "all") || slices.ContainsFunc(r.Args, func(a string) bool { return strings.Contains(a, "json") }) {
			t.Errorf("%s: the condition needs one check's one-line text output", name)
		}
		rt := duration(t, name+" timeout", r.Timeout, timeout)
		ri := duration(t, name+" invoke_interval", r.InvokeInterval, interval)
		if rt > timeout {
			t.Errorf("%s: timeout %v is longer than the global timeout %v (node-problem-detector refuses to start)", name, rt, timeout)
		}
		if rt > ri {
			t.Errorf("%s: timeout %v is longer than its invoke interval %v", name, rt, ri)
		}
		longest = max(longest, rt)
	}
	for _, n := range checkNames {
		if usedChecks[n] != 1 {
			t.Errorf("check %q is run by %d rules, want 1", n, usedChecks[n])
		}
	}
	for cd := range conds {
		if usedConds[cd] != 1 {
			t.Errorf("condition %q is set by %d rules, want 1", cd, usedConds[cd])
		}
	}
	// Rules run concurrency at a time; a round of all of them, each running
	// into its timeout, must fit in the interval.
	if concurrency > 0 {
		rounds := (len(c.Rules) + concurrency - 1) / concurrency
		if worst := longest * time.Duration(rounds); worst > interval {
			t.Errorf("a round of %d rules at concurrency %d can take %v, longer than invoke_interval %v", len(c.Rules), concurrency, worst, interval)
		}
	}
}

// ---------------------------------------------------------------------------
// Prometheus rules

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type alertRule struct{ name, expr string }

func loadAlerts(t *testing.T) []alertRule {
	t.Helper()
	var f ruleFile
	if err := yaml.Unmarshal(readFile(t, rulesFile), &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("%s: group %s has a rule that is not an alert (%q)", rulesFile, g.Name, r.Record)
				continue
			}
			if s := r.Labels["severity"]; s != "info" && s != "warning" && s != "critical" {
				t.Errorf("%s: severity %q, want info, warning or critical", r.Alert, s)
			}
			for _, k := range []string{"summary", "description", "runbook"} {
				if strings.TrimSpace(r.Annotations[k]) == "" {
					t.Errorf("%s: annotation %s is empty", r.Alert, k)
				}
			}
			for _, cmd := range []string{"nodekeeper status", "journalctl -u nodekeeper -x"} {
				if !strings.Contains(r.Annotations["runbook"], cmd) {
					t.Errorf("%s: the runbook does not say to run `%s`", r.Alert, cmd)
				}
			}
			out = append(out, alertRule{r.Alert, r.Expr})
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no alerts", rulesFile)
	}
	return out
}

// TestAlertsHaveUnitTests makes every alert have a unit test where it fires
// and one where it stays quiet.
func TestAlertsHaveUnitTests(t *testing.T) {
	alerts := loadAlerts(t)
	var f struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				EvalTime  string           `yaml:"eval_time"`
				Alertname string           `yaml:"alertname"`
				ExpAlerts []map[string]any `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, ruleTestsFile), &f); err != nil {
		t.Fatalf("%s: %v", ruleTestsFile, err)
	}
	if !slices.Contains(f.RuleFiles, filepath.Base(rulesFile)) {
		t.Errorf("%s: rule_files %q does not name %s", ruleTestsFile, f.RuleFiles, filepath.Base(rulesFile))
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	known := map[string]bool{}
	for _, a := range alerts {
		known[a.name] = true
	}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if !known[a.Alertname] {
				t.Errorf("%s: test of unknown alert %q", ruleTestsFile, a.Alertname)
			}
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, a := range alerts {
		if !fires[a.name] {
			t.Errorf("alert %s: no unit test where it fires", a.name)
		}
		if !quiet[a.name] {
			t.Errorf("alert %s: no unit test where it stays quiet", a.name)
		}
	}
}

// promtool returns promtool's path, or skips (fails when the root layer is
// required: CI installs it).
func promtool(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"promtool", "/usr/bin/promtool"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	layer.Unavailable(t, "root", "promtool not found (Debian/Ubuntu: apt-get install --no-install-recommends prometheus)")
	return ""
}

func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	bin := promtool(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestPromtoolCheckRules(t *testing.T) {
	runPromtool(t, filepath.Dir(rulesFile), "check", "rules", filepath.Base(rulesFile))
}

func TestPromtoolTestRules(t *testing.T) {
	runPromtool(t, filepath.Dir(ruleTestsFile), "test", "rules", filepath.Base(ruleTestsFile))
}

// ---------------------------------------------------------------------------
// Metric names, labels and label values

// series is a queryable series name and the labels its series carry.
type series struct {
	family string
	labels map[string]bool
}

// exportedSeries makes the daemon's metrics show every family (IMDS enabled,
// one call of each setter) and returns the series names a query can use:
// nodekeeper's own, histograms as _bucket/_sum/_count.
func exportedSeries(t *testing.T) map[string]series {
	t.Helper()
	m := metrics.New()
	m.SetBuildInfo("1.0.0")
	m.EnableIMDS()
	m.SetIMDSUp(true)
	for _, c := range checkNames {
		m.DeclareCheck(check.Name(c))
		m.SetCheckStatus(check.Name(c), check.OK)
		m.ObserveCheckDuration(check.Name(c), time.Millisecond)
	}
	m.SetNICIRQs([]metrics.NICIRQ{{Interface: "eth0", Queue: "comp0", IRQ: 24, CPU: 0}})
	m.SetVMBusChannels([]metrics.VMBusChannel{{Interface: "eth0", Channel: "0", CPU: 0}})
	m.IncScheduledEvent(metrics.EventTypeFreeze)
	m.IncVMPause(freeze.SourceClock)
	m.ObservePauseToVerified(freeze.OutcomeRepaired, 10*time.Second)
	m.DeclareAction(irqbalance.ActionRestart)
	m.IncRemediation(irqbalance.ActionRestart, policy.SkippedCap)
	m.SetIrqbalanceKnownBuggy(false)
	m.SetKubeletAllowedCPUs(4)
	m.SetKubeletNetRxOverlapCPUs(0)
	m.SetSoftirqSaturatedCPUs(0)
	m.SetMemoryUnusableIndexes([]metrics.UnusableIndex{{Node: 0, Zone: "Normal", Index: 0.5}})
	cm, err := compaction.NewMetrics(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	cm.Observe(0, compaction.ReasonSafety, policy.Success, 100*time.Millisecond)
	dm, err := dnsprobe.NewMetrics(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	dm.Observe(&dnsprobe.Report{Result: dnsprobe.ResultOK, Took: time.Millisecond})
	ctm, err := ctdrops.NewMetrics(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	lm, err := latency.NewMetrics(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	lc := make([]latency.CPUCounts, 1)
	lc[0].Buckets[3] = 1
	lm.Observe(lc)
	ctm.Observe(ctdrops.Sample{HasHostUDP: true, DNS: []ctdrops.PodUDP{{Name: "coredns", PID: 1}}})
	if n := m.InvalidLabelValues(); n != 0 {
		t.Fatalf("%d label values outside the contract", n)
	}
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]series{}
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "nodekeeper_") {
			continue
		}
		labels := map[string]bool{}
		for _, mm := range f.GetMetric() {
			for _, lp := range mm.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
		for _, l := range targetLabels {
			labels[l] = true
		}
		if f.GetType().String() == "HISTOGRAM" {
			bucket := map[string]bool{"le": true}
			for l := range labels {
				bucket[l] = true
			}
			out[name+"_bucket"] = series{name, bucket}
			out[name+"_sum"] = series{name, labels}
			out[name+"_count"] = series{name, labels}
			continue
		}
		out[name] = series{name, labels}
	}
	out["up"] = series{"up", map[string]bool{"job": true, "instance": true}}
	return out
}

var (
	reString   = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	reBraces   = regexp.MustCompile(`\{[^{}]*\}`)
	reBrackets = regexp.MustCompile(`\[[^\]]*\]`)
	reGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	reToken    = regexp.MustCompile(`[A-Za-z0-9_:.$]+`)
	reSelector = regexp.MustCompile(`([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}`)
	reMatcher  = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"`)
	reSimpleRE = regexp.MustCompile(`^[A-Za-z0-9_]+(?:\|[A-Za-z0-9_]+)*$`)
)

var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "offset": true, "bool": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true,
	"atan2": true, "start": true, "end": true,
}

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges and grouping labels
// are taken out, that are neither keywords nor followed by "(" (functions
// and aggregations).
func metricNames(expr string) []string {
	s := reString.ReplaceAllString(expr, " ")
	s = reBraces.ReplaceAllString(s, " ")
	s = reBrackets.ReplaceAllString(s, " ")
	s = reGrouping.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range reToken.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if c := tok[0]; !(c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			continue // a number or a duration
		}
		if promqlKeywords[strings.ToLower(tok)] || strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\r\n"), "(") {
			continue
		}
		names = append(names, tok)
	}
	return names
}

type matcher struct{ label, op, value string }

type selector struct {
	name     string
	matchers []matcher
}

func selectors(expr string) []selector {
	var out []selector
	for _, m := range reSelector.FindAllStringSubmatch(expr, -1) {
		sel := selector{name: m[1]}
		for _, mm := range reMatcher.FindAllStringSubmatch(m[2], -1) {
			sel.matchers = append(sel.matchers, matcher{mm[1], mm[2], mm[3]})
		}
		out = append(out, sel)
	}
	return out
}

// checkQuery reports every metric name in expr that the daemon does not
// export, every label it does not carry, and every value outside the
// contract's enumerations.
func checkQuery(t *testing.T, where, expr string, exported map[string]series, contractOnly bool) {
	t.Helper()
	names := metricNames(expr)
	if len(names) == 0 {
		t.Errorf("%s: no metric in %q", where, expr)
	}
	for _, n := range names {
		s, ok := exported[n]
		switch {
		case !ok:
			t.Errorf("%s: %s is not a series nodekeeper exports (in %q)", where, n, expr)
		case contractOnly && beyondContract[s.family]:
			t.Errorf("%s: %s is not in the metrics contract", where, n)
		}
	}
	for _, sel := range selectors(expr) {
		s, ok := exported[sel.name]
		if !ok {
			continue // reported above
		}
		for _, m := range sel.matchers {
			if !s.labels[m.label] {
				t.Errorf("%s: %s has no label %q", where, sel.name, m.label)
				continue
			}
			allowed, enum := labelValues[m.label]
			if !enum || m.op == "!=" || m.op == "!~" {
				continue
			}
			vals := []string{m.value}
			if m.op == "=~" {
				if !reSimpleRE.MatchString(m.value) {
					t.Errorf("%s: %s{%s=~%q}: use a plain alternation of the contract's values", where, sel.name, m.label, m.value)
					continue
				}
				vals = strings.Split(m.value, "|")
			}
			for _, v := range vals {
				if !slices.Contains(allowed, v) {
					t.Errorf("%s: %s{%s=%q}: not one of %q", where, sel.name, m.label, v, allowed)
				}
			}
		}
	}
}

func TestMetricParsers(t *testing.T) {
	expr := `histogram_quantile(0.9, sum by (job, le) (increase(nodekeeper_pause_to_verified_seconds_bucket{job="nodekeeper", le=~"60|60\\.0"}[1h]))) > 30
		and on (instance) up offset 1h or vector(0) unless count_values("cpu", nodekeeper_nic_irq_cpu{instance=~"$instance"}[$__rate_interval])`
	got := metricNames(expr)
	want := []string{"nodekeeper_pause_to_verified_seconds_bucket", "up", "nodekeeper_nic_irq_cpu"}
	if !slices.Equal(got, want) {
		t.Errorf("metricNames = %q, want %q", got, want)
	}
	sels := selectors(expr)
	if len(sels) != 2 || sels[0].name != "nodekeeper_pause_to_verified_seconds_bucket" || len(sels[0].matchers) != 2 ||
		sels[0].matchers[1] != (matcher{"le", "=~", `60|60\\.0`}) || sels[1].matchers[0] != (matcher{"instance", "=~", "$instance"}) {
		t.Errorf("selectors = %+v", sels)
	}
}

func TestAlertRulesUseExportedMetrics(t *testing.T) {
	exported := exportedSeries(t)
	for _, a := range loadAlerts(t) {
		checkQuery(t, a.name, a.expr, exported, true)
		for _, sel := range selectors(a.expr) {
			if !slices.Contains(sel.matchers, matcher{"job", "=", "nodekeeper"}) {
				t.Errorf("%s: %s without job=\"nodekeeper\"", a.name, sel.name)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Grafana

type dashQuery struct{ where, expr string }

var reLabelValues = regexp.MustCompile(`^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

func loadDashboard(t *testing.T) (dash map[string]any, panels, variables []dashQuery) {
	t.Helper()
	if err := json.Unmarshal(readFile(t, dashboardFile), &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var walk func(v any, title string)
	walk = func(v any, title string) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["title"].(string); ok {
				title = s
			}
			if ts, ok := v["targets"].([]any); ok {
				for _, tg := range ts {
					tm, _ := tg.(map[string]any)
					expr, _ := tm["expr"].(string)
					ref, _ := tm["refId"].(string)
					panels = append(panels, dashQuery{fmt.Sprintf("panel %q %s", title, ref), expr})
				}
			}
			for k, x := range v {
				if k != "templating" {
					walk(x, title)
				}
			}
		case []any:
			for _, x := range v {
				walk(x, title)
			}
		}
	}
	walk(dash, "")
	tpl, _ := dash["templating"].(map[string]any)
	list, _ := tpl["list"].([]any)
	for _, x := range list {
		v, _ := x.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		q := v["query"]
		if m, ok := q.(map[string]any); ok {
			q = m["query"]
		}
		s, _ := q.(string)
		variables = append(variables, dashQuery{fmt.Sprintf("variable %v", v["name"]), s})
	}
	return dash, panels, variables
}

func TestDashboard(t *testing.T) {
	dash, panels, variables := loadDashboard(t)
	for _, k := range []string{"title", "uid", "panels", "templating", "schemaVersion"} {
		if dash[k] == nil {
			t.Errorf("%s: no %s", dashboardFile, k)
		}
	}
	if len(panels) == 0 {
		t.Fatalf("%s: no queries", dashboardFile)
	}

	// Variables: a Prometheus data source, and job and instance.
	tpl, _ := dash["templating"].(map[string]any)
	list, _ := tpl["list"].([]any)
	vars := map[string]map[string]any{}
	for _, x := range list {
		v, _ := x.(map[string]any)
		name, _ := v["name"].(string)
		vars[name] = v
	}
	if v := vars["datasource"]; v == nil || v["type"] != "datasource" || v["query"] != "prometheus" {
		t.Errorf("want a variable datasource of type datasource, query prometheus; have %v", v)
	}
	if v := vars["instance"]; v == nil || v["multi"] != true || v["includeAll"] != true || v["allValue"] != ".*" {
		t.Errorf("want a multi-value instance variable with All = .* (so nodes that stopped reporting still show); have %v", v)
	}
	if vars["job"] == nil {
		t.Errorf("want a job variable")
	}

	// Panels: unique ids, placed, on the templated data source.
	ids := map[float64]bool{}
	ps, _ := dash["panels"].([]any)
	for _, x := range ps {
		p, _ := x.(map[string]any)
		id, _ := p["id"].(float64)
		if id == 0 || ids[id] {
			t.Errorf("panel %q: id %v missing or repeated", p["title"], p["id"])
		}
		ids[id] = true
		if p["gridPos"] == nil {
			t.Errorf("panel %q: no gridPos", p["title"])
		}
		if p["type"] == "row" {
			continue
		}
		ds, _ := p["datasource"].(map[string]any)
		if ds["uid"] != "${datasource}" {
			t.Errorf("panel %q: datasource %v, want uid ${datasource}", p["title"], p["datasource"])
		}
	}

	// Queries: every selector filtered by the job and instance variables.
	for _, q := range panels {
		sels := selectors(q.expr)
		if len(sels) == 0 {
			t.Errorf("%s: no selector in %q", q.where, q.expr)
		}
		for _, sel := range sels {
			if !slices.Contains(sel.matchers, matcher{"job", "=~", "$job"}) || !slices.Contains(sel.matchers, matcher{"instance", "=~", "$instance"}) {
				t.Errorf("%s: %s is not filtered by job=~\"$job\", instance=~\"$instance\"", q.where, sel.name)
			}
		}
	}
	if len(variables) == 0 {
		t.Errorf("no query variables")
	}
}

func TestDashboardUsesExportedMetrics(t *testing.T) {
	exported := exportedSeries(t)
	_, panels, variables := loadDashboard(t)
	for _, q := range panels {
		checkQuery(t, q.where, q.expr, exported, false)
	}
	for _, q := range variables {
		m := reLabelValues.FindStringSubmatch(q.expr)
		if m == nil {
			t.Errorf("%s: %q is not label_values(<selector>, <label>)", q.where, q.expr)
			continue
		}
		checkQuery(t, q.where, m[1], exported, false)
		for _, n := range metricNames(m[1]) {
			if s, ok := exported[n]; ok && !s.labels[m[2]] {
				t.Errorf("%s: %s has no label %q", q.where, n, m[2])
			}
		}
	}
}

// grafanaVars are Grafana's built-in interval variables, replaced by a
// sample value so promtool can parse the query.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// TestDashboardQueriesParse has promtool parse every dashboard query, as
// recording rules of a throwaway rule file.
func TestDashboardQueriesParse(t *testing.T) {
	_, panels, variables := loadDashboard(t)
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, q := range panels {
		rules = append(rules, rule{fmt.Sprintf("dashboard:query%d", i), grafanaVars.Replace(q.expr)})
	}
	for i, q := range variables {
		if m := reLabelValues.FindStringSubmatch(q.expr); m != nil {
			rules = append(rules, rule{fmt.Sprintf("dashboard:variable%d", i), m[1]})
		}
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.rules.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "check", "rules", "dashboard.rules.yaml")
}

// strs are typed label values as strings.
func strs[T ~string](vs ...T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
