package link

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// usbPort is one serial port of a USB adapter as the kernel describes it in
// sysfs. udev's /dev/serial/by-id name is made of the same facts (vendor and
// model, serial number, interface, port), and by-path of where it is plugged.
type usbPort struct {
	Node      string // the device node: /dev/ttyUSB0
	VID, PID  string // idVendor, idProduct, as sysfs writes them (lower-case hex)
	Serial    string // the adapter's serial number; "" if it has none
	Interface string // bInterfaceNumber: "00"
	Port      string // port_number within the interface (usb-serial drivers); "" for cdc-acm
	USBPath   string // the USB device's sysfs name, which says where it is plugged in: "1-1.4"
}

// sameAdapter reports whether q is the port p was: the same adapter, port
// and interface, plugged in at the same place. Only the node may differ (the
// kernel gives ttyUSB1 while ttyUSB0 is still held). A node that satisfies
// this is where udev's by-id link, and its by-path link, will point.
func (p usbPort) sameAdapter(q usbPort) bool {
	p.Node, q.Node = "", ""
	return p == q
}

// sysfs reads the kernel's list of serial ports. The zero value reads the
// machine's (/sys, /dev); tests point it at a tree laid out the same way.
type sysfs struct {
	root string // "" means /sys
	dev  string // where the nodes are; "" means /dev
}

func (s sysfs) rootDir() string {
	if s.root == "" {
		return "/sys"
	}
	return s.root
}

func (s sysfs) devDir() string {
	if s.dev == "" {
		return "/dev"
	}
	return s.dev
}

// usbTTY: name is what the kernel's two USB serial frameworks call their
// ttys, usb-serial (ftdi_sio, ch341, cp210x, pl2303, …) ttyUSB<n> and cdc-acm
// ttyACM<n>. Looking only at these skips the ~100 virtual consoles and
// built-in UARTs of class/tty, each a few path lookups in sysfs.
// (go.bug.st/serial's enumerator knows no other USB names either.)
func usbTTY(name string) bool {
	return strings.HasPrefix(name, "ttyUSB") || strings.HasPrefix(name, "ttyACM")
}

// ports lists the serial ports of USB adapters whose nodes exist: every one,
// or with at the USB path of a device ("1-1.4"), only those of the device
// plugged in there, which costs a few reads where each port costs ~20
// syscalls (the full list took 30–165 ms on the real-kernel rig's six
// adapters under emulation, while udev was busy with a replug). It reads
// sysfs only and opens no port: go.bug.st/serial's enumerator opens every
// ttyS* to see whether it is real (32 on many PCs, each open raising the
// modem lines of whatever is attached), on every look.
func (s sysfs) ports(at string) ([]usbPort, error) {
	class := filepath.Join(s.rootDir(), "class", "tty")
	var names []string
	if at == "" {
		entries, err := os.ReadDir(class)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			names = append(names, e.Name())
		}
	} else {
		names = s.ttysAt(at)
	}
	var ports []usbPort
	for _, name := range names {
		if !usbTTY(name) {
			continue
		}
		if p, ok := s.port(class, name); ok {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// named is the USB serial port whose tty is name ("ttyUSB0"), if it is one.
func (s sysfs) named(name string) (usbPort, bool) {
	if !usbTTY(name) {
		return usbPort{}, false
	}
	return s.port(filepath.Join(s.rootDir(), "class", "tty"), name)
}

// ttysAt names the ttys of the USB device at usbPath: bus/usb/devices lists
// each device and each of its interfaces ("1-1:1.0"), and an interface holds
// its usb-serial ports (ttyUSB0/) or its cdc-acm tty (tty/ttyACM0/).
func (s sysfs) ttysAt(usbPath string) []string {
	devices := filepath.Join(s.rootDir(), "bus", "usb", "devices")
	entries, err := os.ReadDir(devices)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), usbPath+":") {
			continue
		}
		iface := filepath.Join(devices, e.Name())
		children, _ := os.ReadDir(iface)
		for _, c := range children {
			if c.Name() == "tty" {
				ttys, _ := os.ReadDir(filepath.Join(iface, "tty"))
				for _, t := range ttys {
					names = append(names, t.Name())
				}
			} else {
				names = append(names, c.Name())
			}
		}
	}
	return names
}

// port reads one tty of class/tty. A USB serial port's device is either the
// usb-serial port (its parent is the USB interface: ftdi_sio, ch341, cp210x,
// pl2303) or the interface itself (cdc-acm); the interface's parent is the
// USB device.
func (s sysfs) port(class, name string) (usbPort, bool) {
	p := usbPort{Node: filepath.Join(s.devDir(), name)}
	if _, err := os.Lstat(p.Node); err != nil {
		return usbPort{}, false // in sysfs a moment before devtmpfs makes the node
	}
	dir, err := follow(filepath.Join(class, name))
	if err != nil {
		return usbPort{}, false
	}
	dev, err := follow(filepath.Join(dir, "device"))
	if err != nil {
		return usbPort{}, false // a virtual console, ptmx: no device
	}
	iface := dev
	if p.Interface, err = attr(iface, "bInterfaceNumber"); err != nil {
		iface = filepath.Dir(dev)
		if p.Interface, err = attr(iface, "bInterfaceNumber"); err != nil {
			return usbPort{}, false // not USB: a built-in UART
		}
		p.Port, _ = attr(dev, "port_number")
	}
	usb := filepath.Dir(iface)
	p.USBPath = filepath.Base(usb)
	if p.VID, err = attr(usb, "idVendor"); err != nil {
		return usbPort{}, false
	}
	if p.PID, err = attr(usb, "idProduct"); err != nil {
		return usbPort{}, false
	}
	p.Serial, _ = attr(usb, "serial") // cheap adapters have none
	return p, true
}

// follow resolves one symlink of sysfs, whose targets are relative paths to
// real directories under devices/.
func follow(link string) (string, error) {
	target, err := os.Readlink(link)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(link), target)
	}
	return filepath.Clean(target), nil
}

// attr reads a sysfs attribute: one short line. (Plain open, read, close:
// os.ReadFile would add a stat, and os.Open an epoll registration, which
// sysfs files accept.)
func attr(dir, name string) (string, error) {
	fd, err := unix.Open(filepath.Join(dir, name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &fs.PathError{Op: "open", Path: filepath.Join(dir, name), Err: err}
	}
	defer unix.Close(fd)
	var buf [256]byte
	n, err := unix.Read(fd, buf[:])
	if err != nil {
		return "", &fs.PathError{Op: "read", Path: filepath.Join(dir, name), Err: err}
	}
	v, _, _ := strings.Cut(string(buf[:n]), "\n")
	return v, nil
}
