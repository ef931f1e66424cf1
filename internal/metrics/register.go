package metrics

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg and returns it, or returns the collector of
// the same kind already registered there with the same descriptors: a
// daemon restarted in the same process (the tests, a re-exec) keeps its
// series instead of failing. The watchers' packages register their own
// series through it.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		return c, err
	}
	existing, ok := are.ExistingCollector.(C)
	if !ok {
		return c, fmt.Errorf("a %T is registered where a %T is wanted", are.ExistingCollector, c)
	}
	return existing, nil
}
