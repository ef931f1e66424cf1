package symptoms

import (
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/config"
)

func TestConfigFrom(t *testing.T) {
	if got, want := ConfigFrom(config.Default()), DefaultConfig(); got != want {
		t.Errorf("the defaults differ: config's map to %+v, the package's are %+v", got, want)
	}
	cfg := config.Default()
	cfg.Symptoms = config.Symptoms{SoftirqBusyThreshold: 0.6, Window: 30 * time.Second, SqueezePerSecond: 7,
		CgroupWarn: 1234, KubeletSystemCPUWarn: 0.25}
	want := Config{SoftirqBusyThreshold: 0.6, Window: 30 * time.Second, SqueezePerSecond: 7, CgroupWarn: 1234,
		KubeletSystemCPUWarn: 0.25}
	if got := ConfigFrom(cfg); got != want {
		t.Errorf("ConfigFrom = %+v, want %+v", got, want)
	}
	if err := ConfigFrom(cfg).Validate(); err != nil {
		t.Error(err)
	}
}
