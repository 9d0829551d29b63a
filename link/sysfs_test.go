package link

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// sysTree is a sysfs laid out as the kernel lays it out, for tests:
// class/tty/<name> is a link to the tty's directory under devices/, and its
// device link leads to the usb-serial port (ftdi_sio, ch341, …; its parent is
// the USB interface) or to the interface itself (cdc-acm); the interface's
// parent is the USB device, which has the ids and strings. Paths as on a
// Debian 6.1 kernel with an xhci controller at 0000:00:14.0.
type sysTree struct {
	t    *testing.T
	root string
}

// fakeAdapter is a USB adapter as its USB device directory describes it.
type fakeAdapter struct {
	usbPath                                 string // "1-1": root-hub port 1 of bus 1
	vid, pid, serial, manufacturer, product string // serial "" : the adapter has none (no file)
}

func newSysTree(t *testing.T) sysTree {
	s := sysTree{t: t, root: t.TempDir()}
	must(t, os.MkdirAll(filepath.Join(s.root, "class", "tty"), 0o755))
	return s
}

func (s sysTree) sys(dev string) sysfs { return sysfs{root: s.root, dev: dev} }

func (s sysTree) write(dir string, attrs map[string]string) {
	must(s.t, os.MkdirAll(dir, 0o755))
	for k, v := range attrs {
		must(s.t, os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o444))
	}
}

// usbDevice makes the adapter's USB device and its interface directory, and
// their links in bus/usb/devices.
func (s sysTree) usbDevice(a fakeAdapter, iface string) (ifaceDir string) {
	dev := filepath.Join(s.root, "devices", "pci0000:00", "0000:00:14.0", "usb1", a.usbPath)
	attrs := map[string]string{"idVendor": a.vid, "idProduct": a.pid, "manufacturer": a.manufacturer, "product": a.product}
	if a.serial != "" {
		attrs["serial"] = a.serial
	}
	s.write(dev, attrs)
	ifaceDir = filepath.Join(dev, a.usbPath+":1."+iface[1:])
	s.write(ifaceDir, map[string]string{"bInterfaceNumber": iface})
	for _, d := range []string{dev, ifaceDir} {
		link := filepath.Join(s.root, "bus", "usb", "devices", filepath.Base(d))
		must(s.t, os.MkdirAll(filepath.Dir(link), 0o755))
		rel, err := filepath.Rel(filepath.Dir(link), d)
		must(s.t, err)
		_ = os.Remove(link)
		must(s.t, os.Symlink(rel, link))
	}
	return ifaceDir
}

// classLink makes class/tty/<name> → ttyDir and ttyDir/device → deviceDir,
// both relative, as the kernel makes them.
func (s sysTree) classLink(name, ttyDir, deviceDir string) {
	s.write(ttyDir, map[string]string{"dev": "188:0"})
	link := filepath.Join(s.root, "class", "tty", name)
	_ = os.Remove(link)
	rel, err := filepath.Rel(filepath.Dir(link), ttyDir)
	must(s.t, err)
	must(s.t, os.Symlink(rel, link))
	if deviceDir != "" {
		rel, err = filepath.Rel(ttyDir, deviceDir)
		must(s.t, err)
		_ = os.Remove(filepath.Join(ttyDir, "device"))
		must(s.t, os.Symlink(rel, filepath.Join(ttyDir, "device")))
	}
}

// usbSerial adds a usb-serial port (ftdi_sio): …/1-1:1.0/ttyUSB0/tty/ttyUSB0.
func (s sysTree) usbSerial(name string, a fakeAdapter, iface, port string) {
	portDir := filepath.Join(s.usbDevice(a, iface), name)
	s.write(portDir, map[string]string{"port_number": port})
	s.classLink(name, filepath.Join(portDir, "tty", name), portDir)
}

// acm adds a cdc-acm port: …/1-2:1.0/tty/ttyACM0, device → the interface.
func (s sysTree) acm(name string, a fakeAdapter, iface string) {
	ifaceDir := s.usbDevice(a, iface)
	s.classLink(name, filepath.Join(ifaceDir, "tty", name), ifaceDir)
}

// uart adds a built-in serial port: devices/platform/serial8250/tty/ttyS0.
func (s sysTree) uart(name string) {
	dev := filepath.Join(s.root, "devices", "platform", "serial8250")
	s.write(dev, map[string]string{"driver_override": "(null)"})
	s.classLink(name, filepath.Join(dev, "tty", name), dev)
}

// virtual adds a tty with no device: devices/virtual/tty/tty0.
func (s sysTree) virtual(name string) {
	s.classLink(name, filepath.Join(s.root, "devices", "virtual", "tty", name), "")
}

func TestSysfsPorts(t *testing.T) {
	dev := t.TempDir()
	s := newSysTree(t)
	ftdi := fakeAdapter{usbPath: "1-1", vid: "0403", pid: "6001", serial: "A10KZ3P1", manufacturer: "FTDI", product: "FT232R USB UART"}
	dual := fakeAdapter{usbPath: "1-3", vid: "0403", pid: "6010", serial: "FT2X", manufacturer: "FTDI", product: "Dual RS232-HS"}
	ch340 := fakeAdapter{usbPath: "1-4.2", vid: "1a86", pid: "7523", product: "USB Serial"}
	acm := fakeAdapter{usbPath: "1-2", vid: "2341", pid: "0043", serial: "7573", manufacturer: "Arduino", product: "Uno"}
	s.usbSerial("ttyUSB0", ftdi, "00", "0")
	s.usbSerial("ttyUSB1", dual, "00", "0")
	s.usbSerial("ttyUSB2", dual, "01", "0")
	s.usbSerial("ttyUSB3", ch340, "00", "0")
	s.usbSerial("ttyUSB4", ftdi, "00", "0") // in sysfs, but devtmpfs has not made the node yet
	s.acm("ttyACM0", acm, "00")
	s.uart("ttyS0")
	s.virtual("tty0")
	s.virtual("ptmx")
	for _, n := range []string{"ttyUSB0", "ttyUSB1", "ttyUSB2", "ttyUSB3", "ttyACM0", "ttyS0", "tty0", "ptmx"} {
		must(t, os.WriteFile(filepath.Join(dev, n), nil, 0o600))
	}
	got, err := s.sys(dev).ports("")
	if err != nil {
		t.Fatal(err)
	}
	node := func(n string) string { return filepath.Join(dev, n) }
	want := []usbPort{
		{Node: node("ttyACM0"), VID: "2341", PID: "0043", Serial: "7573", Interface: "00", USBPath: "1-2"},
		{Node: node("ttyUSB0"), VID: "0403", PID: "6001", Serial: "A10KZ3P1", Interface: "00", Port: "0", USBPath: "1-1"},
		{Node: node("ttyUSB1"), VID: "0403", PID: "6010", Serial: "FT2X", Interface: "00", Port: "0", USBPath: "1-3"},
		{Node: node("ttyUSB2"), VID: "0403", PID: "6010", Serial: "FT2X", Interface: "01", Port: "0", USBPath: "1-3"},
		{Node: node("ttyUSB3"), VID: "1a86", PID: "7523", Interface: "00", Port: "0", USBPath: "1-4.2"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ports:\n got %+v\nwant %+v", got, want)
	}
	// The ports of the device plugged in at one place, as the by-id
	// shortcut looks for them.
	for _, tt := range []struct {
		at   string
		want []usbPort
	}{
		{"1-1", want[1:2]},                     // ttyUSB4 is there too, without its node yet
		{"1-3", want[2:4]},                     // both interfaces
		{"1-2", want[0:1]},                     // cdc-acm: the interface's tty/
		{"1-4.2", want[4:5]},                   // behind a hub
		{"1-4", nil}, {"1-9", nil}, {"", want}, // the hub itself; nothing there; everything
	} {
		got, err := s.sys(dev).ports(tt.at)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ports(%q) = %+v, %v; want %+v", tt.at, got, err, tt.want)
		}
	}
	if got[2].sameAdapter(got[3]) || !got[1].sameAdapter(usbPort{Node: "/elsewhere", VID: "0403", PID: "6001", Serial: "A10KZ3P1",
		Interface: "00", Port: "0", USBPath: "1-1"}) {
		t.Errorf("sameAdapter: the two interfaces of one adapter are not the same port; the same port under another node is")
	}
}
