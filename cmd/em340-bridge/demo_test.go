package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDemoRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-no-such-flag"},
		{"-outage", "0s"},
		{"-unplug-every", "0s"},
		{"-poll", "100ms"},
		{"-unplug-every", "5s", "-outage", "5s"},
		{"extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"demo"}, args...), nil, &stdout, &stderr); code != 2 {
			t.Errorf("demo %v: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
}

// TestDemoCommand runs `em340-bridge demo` as a new user would, without a
// terminal, for a few seconds: it shows what HA discovers and reads, and exits 0.
func TestDemoCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"demo", "-duration", "3s", "-no-unplug", "-poll", "1s"}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"mosquitto_sub -p ", "unplug  never (-no-unplug)", `discovered device "EM340 235411W"`,
		"Energy import", "HA    reading: L1 ", "HA    link online", "HA    EM340 bridge: unavailable"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "unplugged") {
		t.Error("unplugged despite -no-unplug")
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr not quiet:\n%s", stderr.String())
	}
}
