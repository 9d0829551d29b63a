package link

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// ErrNoAdapter means no adapter matches the configured USB identity.
var ErrNoAdapter = errors.New("no USB serial adapter matches")

// usbSpec is an adapter named by USB identity: usb:VID:PID[:SERIAL].
type usbSpec struct{ vid, pid, serial string }

func parseUSB(device string) (usbSpec, bool) {
	rest, ok := strings.CutPrefix(device, "usb:")
	if !ok {
		return usbSpec{}, false
	}
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) < 2 {
		return usbSpec{}, false
	}
	s := usbSpec{vid: parts[0], pid: parts[1]}
	if len(parts) == 3 {
		s.serial = parts[2]
	}
	return s, true
}

// match picks the port the spec names. Without a serial number, two matching
// adapters are ambiguous: the bridge could read the wrong meter.
func (s usbSpec) match(ports []usbPort) (usbPort, error) {
	var found []usbPort
	var nodes []string
	for _, p := range ports {
		if !strings.EqualFold(p.VID, s.vid) || !strings.EqualFold(p.PID, s.pid) {
			continue
		}
		if s.serial != "" && p.Serial != s.serial {
			continue
		}
		found, nodes = append(found, p), append(nodes, p.Node)
	}
	switch len(found) {
	case 0:
		return usbPort{}, fmt.Errorf("usb:%s:%s%s: %w", s.vid, s.pid, optional(s.serial), ErrNoAdapter)
	case 1:
		return found[0], nil
	}
	return usbPort{}, fmt.Errorf("usb:%s:%s matches %s; add the adapter's serial number (usb:VID:PID:SERIAL)",
		s.vid, s.pid, strings.Join(nodes, ", "))
}

func optional(serial string) string {
	if serial == "" {
		return ""
	}
	return ":" + serial
}

// resolver turns the configured device into the node to open, afresh at every
// open: a by-id link follows the adapter, a USB identity is looked up; a
// gateway URL stays as it is.
type resolver struct {
	device    string
	sys       sysfs
	enumerate func(at string) ([]usbPort, error) // sys.ports
}

// resolve returns the node to open and, when sysfs was read to find it, its
// USB port. known is the USB adapter port the link used before (nil: none).
// While a configured link is missing, a node the kernel has made for that
// very port is opened without waiting for udev to make the link (57–450 ms
// after the node on a real kernel). A USB identity with a serial number is
// looked for first where its adapter was plugged in.
func (r resolver) resolve(known *usbPort) (string, *usbPort, error) {
	if IsGatewayURL(r.device) {
		return r.device, nil, nil // dialled, not opened: nothing to resolve
	}
	if spec, ok := parseUSB(r.device); ok {
		if known != nil && spec.serial != "" {
			// Without a serial number the whole list must be seen: a second
			// adapter of the make elsewhere makes the identity ambiguous.
			if ports, err := r.enumerate(known.USBPath); err == nil {
				if p, err := spec.match(ports); err == nil {
					return p.Node, &p, nil
				}
			}
		}
		ports, err := r.enumerate("")
		if err != nil {
			return "", nil, fmt.Errorf("list serial ports: %w", err)
		}
		p, err := spec.match(ports)
		if err != nil {
			return "", nil, err
		}
		return p.Node, &p, nil
	}
	path, err := filepath.EvalSymlinks(r.device)
	if err == nil {
		return path, nil, nil
	}
	if known != nil && errors.Is(err, fs.ErrNotExist) {
		if node, p, ok := r.nodeOf(*known); ok {
			return node, &p, nil
		}
	}
	return r.device, nil, err // a bare ENOENT: the adapter is missing
}

// nodeOf is the node (resolved) of the one port that is known's adapter
// port, plugged in where it was; none if no port, or more than one, is. Only
// the USB device plugged in there is looked at.
func (r resolver) nodeOf(known usbPort) (string, usbPort, bool) {
	ports, err := r.enumerate(known.USBPath)
	if err != nil {
		return "", usbPort{}, false
	}
	var found []usbPort
	for _, p := range ports {
		if p.sameAdapter(known) {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		return "", usbPort{}, false
	}
	node, err := filepath.EvalSymlinks(found[0].Node)
	return node, found[0], err == nil
}

// portOf is the USB port whose node is node (resolved), if any: read from
// sysfs under the node's name, or else looked for in the whole list (a node
// reached through links of one's own, or a pty standing in for one).
func (r resolver) portOf(node string) (usbPort, bool) {
	if p, ok := r.sys.named(filepath.Base(node)); ok && p.Node == node {
		return p, true
	}
	ports, err := r.enumerate("")
	if err != nil {
		return usbPort{}, false
	}
	for _, p := range ports {
		if resolved, err := filepath.EvalSymlinks(p.Node); err == nil && resolved == node {
			return p, true
		}
	}
	return usbPort{}, false
}
