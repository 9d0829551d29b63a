package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

const usbPrefix = "usb:"

// USBDevice selects the serial adapter by USB identity, which, unlike
// /dev/ttyUSBn, stays the same when adapters are re-plugged or re-ordered.
type USBDevice struct {
	VendorID  uint16
	ProductID uint16
	Serial    string // empty = any adapter with this VID:PID
}

// ParseUSBDevice parses usb:VID:PID[:SERIAL], VID and PID being 4 hex digits.
func ParseUSBDevice(s string) (USBDevice, error) {
	rest, ok := strings.CutPrefix(s, usbPrefix)
	if !ok {
		return USBDevice{}, fmt.Errorf("%q does not start with %s", s, usbPrefix)
	}
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) < 2 {
		return USBDevice{}, errors.New("needs usb:VID:PID[:SERIAL]")
	}
	vid, err := parseUSBID(parts[0])
	if err != nil {
		return USBDevice{}, fmt.Errorf("vendor id: %w", err)
	}
	pid, err := parseUSBID(parts[1])
	if err != nil {
		return USBDevice{}, fmt.Errorf("product id: %w", err)
	}
	d := USBDevice{VendorID: vid, ProductID: pid}
	if len(parts) == 3 {
		if parts[2] == "" {
			return USBDevice{}, errors.New("empty serial after the last :")
		}
		d.Serial = parts[2]
	}
	return d, nil
}

func parseUSBID(s string) (uint16, error) {
	if len(s) != 4 {
		return 0, fmt.Errorf("%q is not 4 hex digits", s)
	}
	n, err := strconv.ParseUint(s, 16, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not 4 hex digits: %w", s, err)
	}
	return uint16(n), nil
}

// String gives the usb:VID:PID[:SERIAL] form, lowercase hex as in sysfs.
func (d USBDevice) String() string {
	s := fmt.Sprintf("%s%04x:%04x", usbPrefix, d.VendorID, d.ProductID)
	if d.Serial != "" {
		s += ":" + d.Serial
	}
	return s
}

// SerialUSB returns the adapter's USB identity when EM340_SERIAL_DEVICE is
// usb:…, and false when it is a path to open as is.
func (c Config) SerialUSB() (USBDevice, bool) {
	d, err := ParseUSBDevice(c.SerialDevice)
	return d, err == nil
}
