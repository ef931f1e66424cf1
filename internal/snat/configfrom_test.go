package snat

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nodekeeper/nodekeeper/internal/config"
)

// Every snat.* key reaches the check, and what the configuration accepts the
// check accepts.
func TestConfigFrom(t *testing.T) {
	cfg := config.Default()
	cfg.SNAT = config.SNAT{Enabled: config.SNATTrue, Interval: time.Minute, AllocatedPorts: 50000, BackendPoolSize: 120,
		WarnRatio: 0.6, PrivateCIDRs: []string{"10.224.0.0/12", " 172.31.5.9/16 "}}
	got := ConfigFrom(cfg)
	want := Config{Enabled: "true", Interval: time.Minute, AllocatedPorts: 50000, BackendPoolSize: 120, WarnRatio: 0.6,
		PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.224.0.0/12"), netip.MustParsePrefix("172.31.0.0/16")}}
	if got.Enabled != want.Enabled || got.Interval != want.Interval || got.AllocatedPorts != want.AllocatedPorts ||
		got.BackendPoolSize != want.BackendPoolSize || got.WarnRatio != want.WarnRatio || !slices.Equal(got.PrivateCIDRs, want.PrivateCIDRs) {
		t.Errorf("ConfigFrom = %+v, want %+v", got, want)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("a configuration the file accepts is refused by the check: %v", err)
	}
	cfg.SNAT.BackendPoolSize = config.SNATMaxBackendPoolSize
	if err := ConfigFrom(cfg).Validate(); err != nil {
		t.Errorf("backendPoolSize at the file's bound: %v", err)
	}
	if DefaultConfig().Interval != config.Default().SNAT.Interval {
		t.Error("the check's defaults are not the configuration's")
	}
}
