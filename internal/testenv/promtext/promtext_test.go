package promtext

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const text = `# HELP nodekeeper_remediations_total Repairs.
# TYPE nodekeeper_remediations_total counter
nodekeeper_remediations_total{action="irq_spread",result="failure"} 2
nodekeeper_remediations_total{action="irq_spread",result="success"} 3
nodekeeper_remediations_total{action="irq_spread_more",result="success"} 7
# TYPE nodekeeper_imds_up gauge
nodekeeper_imds_up 1
# TYPE nodekeeper_imds_upper gauge
nodekeeper_imds_upper 5
# TYPE nodekeeper_pause_to_verified_seconds histogram
nodekeeper_pause_to_verified_seconds_bucket{outcome="repaired",le="1"} 0
nodekeeper_pause_to_verified_seconds_bucket{outcome="repaired",le="10"} 1
nodekeeper_pause_to_verified_seconds_bucket{outcome="repaired",le="+Inf"} 1
nodekeeper_pause_to_verified_seconds_sum{outcome="repaired"} 4.5
nodekeeper_pause_to_verified_seconds_count{outcome="repaired"} 1
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds_sum 9
rpc_seconds_count 30
plain_untyped{a="b"} 11
`

func TestValue(t *testing.T) {
	fams, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels Labels
		want   float64
		found  bool
	}{
		{"nodekeeper_remediations_total", Labels{"action": "irq_spread", "result": "success"}, 3, true},
		{"nodekeeper_remediations_total", Labels{"result": "failure"}, 2, true},
		{"nodekeeper_remediations_total", Labels{"action": "irq_spread_more"}, 7, true},
		{"nodekeeper_remediations_total", Labels{"action": "irq"}, 0, false},
		{"nodekeeper_remediations_total", Labels{"action": "irq_spread", "result": "skipped"}, 0, false},
		{"nodekeeper_remediations_total", nil, 2, true}, // the first series
		{"nodekeeper_remediations", nil, 0, false},
		{"nodekeeper_imds_up", nil, 1, true},
		{"nodekeeper_imds_upper", nil, 5, true},
		{"nodekeeper_imds_up", Labels{"source": "x"}, 0, false},
		{"nodekeeper_pause_to_verified_seconds_sum", Labels{"outcome": "repaired"}, 4.5, true},
		{"nodekeeper_pause_to_verified_seconds_count", Labels{"outcome": "repaired"}, 1, true},
		{"nodekeeper_pause_to_verified_seconds_count", Labels{"outcome": "failed"}, 0, false},
		{"nodekeeper_pause_to_verified_seconds_bucket", Labels{"outcome": "repaired", "le": "10"}, 1, true},
		{"nodekeeper_pause_to_verified_seconds_bucket", Labels{"outcome": "repaired", "le": "1.0"}, 0, true},
		{"nodekeeper_pause_to_verified_seconds_bucket", Labels{"outcome": "repaired", "le": "5"}, 0, false},
		{"nodekeeper_pause_to_verified_seconds", nil, 0, false},
		{"rpc_seconds_sum", nil, 9, true},
		{"rpc_seconds_count", nil, 30, true},
		{"plain_untyped", Labels{"a": "b"}, 11, true},
	} {
		got, found := fams.Value(c.name, c.labels)
		if got != c.want || found != c.found {
			t.Errorf("Value(%s, %v) = %v, %v; want %v, %v", c.name, c.labels, got, found, c.want, c.found)
		}
	}
}

func TestParseRejectsBrokenText(t *testing.T) {
	for _, bad := range []string{
		"nodekeeper_imds_up{source=\"x\" 1\n",
		"# TYPE a counter\na -1 x\n",
		"# TYPE a counter\n# TYPE a gauge\na 1\n",
	} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("Parse(%q) = nil error", bad)
		}
	}
}

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.Error(w, "not here", http.StatusNotFound)
			return
		}
		w.Write([]byte(text))
	}))
	defer srv.Close()
	fams, err := Scrape(context.Background(), srv.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := fams.Value("nodekeeper_imds_up", nil); !ok || v != 1 {
		t.Errorf("nodekeeper_imds_up = %v, %v", v, ok)
	}
	if _, err := Scrape(context.Background(), srv.URL+"/other"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("Scrape of a 404: %v", err)
	}
}
