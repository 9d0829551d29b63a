package link

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ports is what sysfs lists on a machine with two FTDI adapters and a CH340.
func ports() []usbPort {
	return []usbPort{
		{Node: "/dev/ttyUSB0", VID: "0403", PID: "6001", Serial: "A10KZ3P1", Interface: "00", Port: "0", USBPath: "1-1"},
		{Node: "/dev/ttyUSB1", VID: "1a86", PID: "7523", Interface: "00", Port: "0", USBPath: "1-2"},
		{Node: "/dev/ttyUSB2", VID: "0403", PID: "6001", Serial: "B77QX9", Interface: "00", Port: "0", USBPath: "1-3"},
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
		p, err := spec.match(ports())
		got := p.Node
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
	r := resolver{device: "usb:1a86:7523", enumerate: func(string) ([]usbPort, error) { return list, nil }}
	if got, _, _ := r.resolve(nil); got != "/dev/ttyUSB1" {
		t.Fatalf("resolve = %q", got)
	}
	list = []usbPort{{Node: "/dev/ttyUSB0", VID: "0403", PID: "6001"}}
	if _, _, err := r.resolve(nil); !errors.Is(err, ErrNoAdapter) || classifyOpen(err) != CauseAdapterMissing {
		t.Fatalf("unplugged: err %v", err)
	}
	list = append(list, usbPort{Node: "/dev/ttyUSB3", VID: "1a86", PID: "7523"})
	if got, _, _ := r.resolve(nil); got != "/dev/ttyUSB3" {
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
	if _, _, err := r.resolve(nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing by-id: err %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(byID), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../ttyUSB1", byID); err != nil {
		t.Fatal(err)
	}
	got, _, err := r.resolve(nil)
	if err != nil || got != node {
		t.Fatalf("resolve = %q, %v; want %q", got, err, node)
	}
}

// While the by-id link is missing, the node of the adapter port it led to
// is opened, if exactly one node is that port plugged in where it was; a
// link that exists is followed whatever is known.
func TestResolveKnownAdapterBeforeItsLink(t *testing.T) {
	dev := t.TempDir()
	for _, n := range []string{"ttyUSB0", "ttyUSB1", "ttyUSB2"} {
		must(t, os.WriteFile(filepath.Join(dev, n), nil, 0o600))
	}
	byID := filepath.Join(dev, "serial", "by-id", "usb-FTDI_FT232R_USB_UART_A10KZ3P1-if00-port0")
	known := usbPort{Node: filepath.Join(dev, "ttyUSB0"), VID: "0403", PID: "6001", Serial: "A10KZ3P1",
		Interface: "00", Port: "0", USBPath: "1-1"}
	at := func(node string, change func(*usbPort)) usbPort {
		p := known
		p.Node = filepath.Join(dev, node)
		if change != nil {
			change(&p)
		}
		return p
	}
	tests := []struct {
		name  string
		link  string // the by-id link's target; "" none
		known bool
		ports []usbPort
		want  string // node, relative to dev; "" an error
	}{
		{name: "back as ttyUSB1, no link yet", known: true, ports: []usbPort{at("ttyUSB1", nil)}, want: "ttyUSB1"},
		{name: "no adapter known", ports: []usbPort{at("ttyUSB1", nil)}},
		{name: "another adapter", known: true, ports: []usbPort{at("ttyUSB1", func(p *usbPort) { p.Serial = "B77QX9" })}},
		{name: "the other interface of a dual adapter", known: true, ports: []usbPort{at("ttyUSB1", func(p *usbPort) { p.Interface = "01" })}},
		{name: "the same adapter in another USB port", known: true, ports: []usbPort{at("ttyUSB1", func(p *usbPort) { p.USBPath = "1-2" })}},
		{name: "two nodes claim to be it", known: true, ports: []usbPort{at("ttyUSB1", nil), at("ttyUSB2", nil)}},
		{name: "the link is followed", link: "../../ttyUSB2", known: true, ports: []usbPort{at("ttyUSB1", nil)}, want: "ttyUSB2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			must(t, os.RemoveAll(filepath.Join(dev, "serial")))
			if tt.link != "" {
				must(t, os.MkdirAll(filepath.Dir(byID), 0o755))
				must(t, os.Symlink(tt.link, byID))
			}
			r := resolver{device: byID, enumerate: func(at string) ([]usbPort, error) {
				var ports []usbPort
				for _, p := range tt.ports {
					if at == "" || p.USBPath == at {
						ports = append(ports, p)
					}
				}
				return ports, nil
			}}
			var k *usbPort
			if tt.known {
				k = &known
			}
			got, _, err := r.resolve(k)
			if tt.want == "" {
				if err == nil || classifyOpen(err) != CauseAdapterMissing {
					t.Fatalf("resolve = %q, %v; want the adapter missing", got, err)
				}
				return
			}
			if want := filepath.Join(dev, tt.want); err != nil || got != want {
				t.Fatalf("resolve = %q, %v; want %q", got, err, want)
			}
		})
	}
}
