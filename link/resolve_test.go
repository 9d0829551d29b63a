package link

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.bug.st/serial/enumerator"
)

// ports is shaped like enumerator.GetDetailedPortsList on a machine with two
// FTDI adapters and a CH340, and a built-in UART.
func ports() []*enumerator.PortDetails {
	return []*enumerator.PortDetails{
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A10KZ3P1", Product: "FT232R USB UART"},
		{Name: "/dev/ttyUSB1", IsUSB: true, VID: "1a86", PID: "7523", Product: "USB Serial"},
		{Name: "/dev/ttyUSB2", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "B77QX9", Product: "FT232R USB UART"},
	}
}

func TestUSBMatch(t *testing.T) {
	tests := []struct {
		device string
		want   string
		err    string
	}{
		{"usb:1a86:7523", "/dev/ttyUSB1", ""},
		{"usb:1A86:7523", "/dev/ttyUSB1", ""},
		{"usb:0403:6001:B77QX9", "/dev/ttyUSB2", ""},
		{"usb:0403:6001:A10KZ3P1", "/dev/ttyUSB0", ""},
		{"usb:0403:6001", "", "add the adapter's serial number"},
		{"usb:0403:6001:NOPE", "", "no USB serial adapter matches"},
		{"usb:10c4:ea60", "", "no USB serial adapter matches"},
	}
	for _, tt := range tests {
		spec, ok := parseUSB(tt.device)
		if !ok {
			t.Fatalf("%s not parsed", tt.device)
		}
		got, err := spec.match(ports())
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v, want %q", tt.device, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s = %q, %v; want %q", tt.device, got, err, tt.want)
		}
	}
}

func TestUSBAdapterReturnsUnderAnotherName(t *testing.T) {
	list := ports()
	r := resolver{device: "usb:1a86:7523", enumerate: func() ([]*enumerator.PortDetails, error) { return list, nil }}
	if got, _ := r.resolve(); got != "/dev/ttyUSB1" {
		t.Fatalf("resolve = %q", got)
	}
	list = []*enumerator.PortDetails{{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001"}}
	if _, err := r.resolve(); !errors.Is(err, ErrNoAdapter) || classifyOpen(err) != CauseAdapterMissing {
		t.Fatalf("unplugged: err %v", err)
	}
	list = append(list, &enumerator.PortDetails{Name: "/dev/ttyUSB3", IsUSB: true, VID: "1A86", PID: "7523"})
	if got, _ := r.resolve(); got != "/dev/ttyUSB3" {
		t.Fatalf("replugged as %q, want /dev/ttyUSB3", got)
	}
}

func TestResolveFollowsLinks(t *testing.T) {
	dir := t.TempDir()
	node := filepath.Join(dir, "ttyUSB1")
	if err := os.WriteFile(node, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	byID := filepath.Join(dir, "serial", "by-id", "usb-FTDI_FT232R-if00-port0")
	r := resolver{device: byID}
	if _, err := r.resolve(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing by-id: err %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(byID), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../ttyUSB1", byID); err != nil {
		t.Fatal(err)
	}
	got, err := r.resolve()
	if err != nil || got != node {
		t.Fatalf("resolve = %q, %v; want %q", got, err, node)
	}
}
