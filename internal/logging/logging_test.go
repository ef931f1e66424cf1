package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

func TestNewText(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, FormatText, slog.LevelInfo).With(KeyCheck, "irq")
	l.Debug("hidden")
	l.Info("repair started", Msg(MsgRepairStarted), KeyAction, "irqbalance_restart", KeyCPUs, []int{4, 5})
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("debug entry written at level info:\n%s", out)
	}
	want := `level=INFO msg="repair started" check=irq message_id=` + MsgRepairStarted +
		` action=irqbalance_restart cpus="[4 5]"` + "\n"
	if i := strings.Index(out, "level="); i < 0 || out[i:] != want {
		t.Errorf("got  %q\nwant …%q", out, want)
	}
	if !strings.HasPrefix(out, "time=") {
		t.Errorf("text output should start with time=: %q", out)
	}
}

func TestNewJSON(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, FormatJSON, slog.LevelDebug)
	l.WithGroup("irq").Debug("moved", Msg(MsgRepairSucceeded), "n", 3)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not JSON: %v: %s", err, buf.String())
	}
	if got["level"] != "DEBUG" || got["msg"] != "moved" {
		t.Errorf("level/msg = %v/%v", got["level"], got["msg"])
	}
	irq, ok := got["irq"].(map[string]any)
	if !ok {
		t.Fatalf("no irq group: %s", buf.String())
	}
	if irq["message_id"] != MsgRepairSucceeded || irq["n"] != float64(3) {
		t.Errorf("irq group = %v", irq)
	}
	if _, ok := got["time"]; !ok {
		t.Errorf("no time in %s", buf.String())
	}
}

func TestNewUnknownFormatIsText(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, "yaml", slog.LevelInfo).Info("hi")
	if !strings.Contains(buf.String(), "level=INFO msg=hi") {
		t.Errorf("got %q, want text", buf.String())
	}
}

func TestMsg(t *testing.T) {
	a := Msg(MsgVMPause)
	if a.Key != "MESSAGE_ID" || a.Value.String() != MsgVMPause {
		t.Errorf("Msg = %v", a)
	}
}
