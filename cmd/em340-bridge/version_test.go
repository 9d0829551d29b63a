package main

import (
	"bytes"
	"io"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/simonvetter/modbus"
)

func TestBuildVersion(t *testing.T) {
	vcs := func(rev, modified string) *debug.BuildInfo {
		info := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
		if rev != "" {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev})
		}
		if modified != "" {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return info
	}
	for _, tc := range []struct {
		name, stamped string
		info          *debug.BuildInfo
		ok            bool
		want          string
	}{
		{"stamped wins", "0.2.0", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"}}, true, "0.2.0"},
		{"go install at a version", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"}}, true, "v0.1.0"},
		{"checkout, clean", "", vcs("0432a0f2c6", "false"), true, "0432a0f2c6"},
		{"checkout, modified", "", vcs("0432a0f2c6", "true"), true, "0432a0f2c6-dirty"},
		{"no VCS information", "", vcs("", ""), true, "dev"},
		{"no build information", "", nil, false, "dev"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := buildVersion(tc.stamped, tc.info, tc.ok); got != tc.want {
				t.Errorf("buildVersion = %q, want %q", got, tc.want)
			}
		})
	}
}

// The test binary's own build info has no main module version, so the
// command falls back as a build from source does: never an empty line.
func TestVersionCommand(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"version"}, nil, &stdout, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	info, ok := debug.ReadBuildInfo()
	if got, want := strings.TrimSpace(stdout.String()), buildVersion("", info, ok); got != want || got == "" {
		t.Errorf("version printed %q, want %q", got, want)
	}
}

func TestSimulateHelp(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"simulate", "-h"}, nil, io.Discard, &stderr); code != 0 {
		t.Fatalf("simulate -h: exit %d", code)
	}
	for _, want := range []string{"usage: em340-bridge simulate", "pseudo-terminal", "EM340_SERIAL_DEVICE", "-address", "-device"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("simulate -h lacks %q:\n%s", want, stderr.String())
		}
	}
	for _, bad := range []string{"0", "248"} {
		if code := run([]string{"simulate", "-address", bad}, nil, io.Discard, io.Discard); code != 2 {
			t.Errorf("simulate -address %s: exit %d, want 2", bad, code)
		}
	}
}

// With -address the simulator answers at that address and not at 1, and
// says which EM340_MODBUS_ADDRESS to set.
func TestSimulateAddress(t *testing.T) {
	device := filepath.Join(t.TempDir(), "ttyUSB0")
	startSimulate(t, "EM340_SERIAL_DEVICE="+device+" EM340_MODBUS_ADDRESS=7 ", "-device", device, "-address", "7")
	client, err := modbus.NewClient(&modbus.ClientConfiguration{URL: "rtu://" + device, Speed: 115200, StopBits: 1, Timeout: 700 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Open(); err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	for _, tc := range []struct {
		unit    uint8
		answers bool
	}{{7, true}, {1, false}} {
		if err := client.SetUnitId(tc.unit); err != nil {
			t.Fatal(err)
		}
		model, err := client.ReadRegister(meter.AddrModelCode, modbus.HOLDING_REGISTER)
		if answered := err == nil && model == meter.ModelEM340; answered != tc.answers {
			t.Errorf("address %d: model %d, %v; want an answer %v", tc.unit, model, err, tc.answers)
		}
	}
}
