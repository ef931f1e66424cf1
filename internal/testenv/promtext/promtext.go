// Package promtext reads the Prometheus text exposition format in tests: a
// scrape of /metrics parsed by expfmt's TextParser into metric families, and
// the value of one series looked up by metric name and labels.
//
// Only tests use this package.
package promtext

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by family name.
type Families map[string]*dto.MetricFamily

// Labels are label names and values a series must carry.
type Labels map[string]string

// Parse parses text in the Prometheus text format.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse the metrics text: %w", err)
	}
	return fams, nil
}

// Scrape fetches url (a /metrics endpoint) and parses the answer.
func Scrape(ctx context.Context, url string) (Families, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	fams, err := Parse(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	return fams, nil
}

// Value returns the value of the first series (in the order of the text) of
// the sample name whose labels include all of labels, and whether there is
// one. name is a sample name as the text shows it: a counter's, a gauge's or
// an untyped metric's name, or a histogram's or summary's name with _sum or
// _count (or _bucket, with an "le" label) appended.
func (f Families) Value(name string, labels Labels) (float64, bool) {
	if fam, ok := f[name]; ok {
		for _, m := range fam.GetMetric() {
			if !has(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Untyped != nil:
				return m.Untyped.GetValue(), true
			}
		}
	}
	for _, suffix := range []string{"_sum", "_count", "_bucket"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		fam, ok := f[base]
		if !ok {
			continue
		}
		rest := labels
		var le float64
		if suffix == "_bucket" {
			s, ok := labels[model.BucketLabel]
			if !ok {
				return 0, false
			}
			var err error
			if le, err = strconv.ParseFloat(s, 64); err != nil {
				return 0, false
			}
			rest = make(Labels, len(labels))
			for k, v := range labels {
				if k != model.BucketLabel {
					rest[k] = v
				}
			}
		}
		for _, m := range fam.GetMetric() {
			if !has(m, rest) {
				continue
			}
			if v, ok := aggregate(m, suffix, le); ok {
				return v, true
			}
		}
	}
	return 0, false
}

func aggregate(m *dto.Metric, suffix string, le float64) (float64, bool) {
	switch h, s := m.Histogram, m.Summary; {
	case h != nil && suffix == "_sum":
		return h.GetSampleSum(), true
	case h != nil && suffix == "_count":
		return float64(h.GetSampleCount()), true
	case h != nil && suffix == "_bucket":
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == le {
				return float64(b.GetCumulativeCount()), true
			}
		}
	case s != nil && suffix == "_sum":
		return s.GetSampleSum(), true
	case s != nil && suffix == "_count":
		return float64(s.GetSampleCount()), true
	}
	return 0, false
}

func has(m *dto.Metric, labels Labels) bool {
	for k, v := range labels {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k {
				found = l.GetValue() == v
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
