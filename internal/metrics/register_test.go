package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterReusesTheRegisteredCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	counter := func() *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"a"})
	}
	first, err := Register(reg, counter())
	if err != nil {
		t.Fatal(err)
	}
	first.WithLabelValues("1").Inc()
	again, err := Register(reg, counter())
	if err != nil || again != first {
		t.Fatalf("registering again: %p, %v; want the first (%p)", again, err, first)
	}

	// Another kind under the same name: an error, not a panic.
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "x_total", Help: "x"}, []string{"a"})
	if _, err := Register(reg, g); err == nil || !strings.Contains(err.Error(), "CounterVec") {
		t.Errorf("a gauge where a counter is: %v", err)
	}
	// Same name, other labels: the registry's own error.
	other := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"b"})
	if _, err := Register(reg, other); err == nil {
		t.Error("a counter with other labels was accepted")
	}
}
