package irq

import (
	"reflect"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/config"
)

func TestOptionsFrom(t *testing.T) {
	cfg := config.Default()
	cfg.IRQ.Interfaces.Include, cfg.IRQ.Interfaces.Exclude = []string{"eth*"}, []string{"eth9"}
	cfg.IRQ.MinSpreadRatio, cfg.IRQ.VFMissingAfter = 0.4, 7*time.Minute
	want := Options{Filter: Filter{Include: []string{"eth*"}, Exclude: []string{"eth9"}}, MinSpreadRatio: 0.4,
		VFMissingAfter: 7 * time.Minute}
	if got := OptionsFrom(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("OptionsFrom = %+v, want %+v", got, want)
	}
}
