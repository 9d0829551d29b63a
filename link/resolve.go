package link

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"go.bug.st/serial/enumerator"
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
func (s usbSpec) match(ports []*enumerator.PortDetails) (string, error) {
	var found []string
	for _, p := range ports {
		if !p.IsUSB || !strings.EqualFold(p.VID, s.vid) || !strings.EqualFold(p.PID, s.pid) {
			continue
		}
		if s.serial != "" && p.SerialNumber != s.serial {
			continue
		}
		found = append(found, p.Name)
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("usb:%s:%s%s: %w", s.vid, s.pid, optional(s.serial), ErrNoAdapter)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("usb:%s:%s matches %s; add the adapter's serial number (usb:VID:PID:SERIAL)",
		s.vid, s.pid, strings.Join(found, ", "))
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
	enumerate func() ([]*enumerator.PortDetails, error)
}

func (r resolver) resolve() (string, error) {
	if IsGatewayURL(r.device) {
		return r.device, nil // dialled, not opened: nothing to resolve
	}
	if spec, ok := parseUSB(r.device); ok {
		ports, err := r.enumerate()
		if err != nil {
			return "", fmt.Errorf("list serial ports: %w", err)
		}
		return spec.match(ports)
	}
	path, err := filepath.EvalSymlinks(r.device)
	if err != nil {
		return r.device, err // a bare ENOENT: the adapter is missing
	}
	return path, nil
}
