package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/em340-bridge/em340-bridge/link"
)

// Addresses are the Modbus addresses of the meters on one line, in the order
// given: EM340_MODBUS_ADDRESS=1,2,5. One address is the common case.
type Addresses []uint8

// maxAddress is the highest unicast Modbus address; 0 is broadcast.
const maxAddress = 247

// UnmarshalText parses a comma-separated list; spaces around an entry are
// allowed, an empty entry, a duplicate or an address outside 1–247 is not.
func (a *Addresses) UnmarshalText(text []byte) error {
	var out Addresses
	for entry := range strings.SplitSeq(string(text), ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return errors.New("an empty entry in the list")
		}
		n, err := strconv.Atoi(entry)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", entry)
		}
		if n < 1 || n > maxAddress {
			return fmt.Errorf("%d is out of range", n)
		}
		if slices.Contains(out, uint8(n)) {
			return fmt.Errorf("%d is listed twice", n)
		}
		out = append(out, uint8(n))
	}
	*a = out
	return nil
}

// String is the list as EM340_MODBUS_ADDRESS spells it.
func (a Addresses) String() string {
	parts := make([]string, len(a))
	for i, n := range a {
		parts[i] = strconv.Itoa(int(n))
	}
	return strings.Join(parts, ",")
}

// DeviceIDs name the meters in topics and Home Assistant, one per address in
// EM340_MODBUS_ADDRESS's order; empty means each meter's serial number.
type DeviceIDs []string

// UnmarshalText parses a comma-separated list; spaces around an entry are dropped.
func (d *DeviceIDs) UnmarshalText(text []byte) error {
	var out DeviceIDs
	for entry := range strings.SplitSeq(string(text), ",") {
		out = append(out, strings.TrimSpace(entry))
	}
	*d = out
	return nil
}

// Meter is one meter the bridge reads: its address on the line and the device
// id it is published under ("" = its serial number, learnt at connect).
type Meter struct {
	Address  uint8
	DeviceID string
}

// Meters pairs each address with its device id.
func (c Config) Meters() []Meter {
	meters := make([]Meter, len(c.ModbusAddresses))
	for i, a := range c.ModbusAddresses {
		meters[i].Address = a
		if i < len(c.DeviceIDs) {
			meters[i].DeviceID = c.DeviceIDs[i]
		}
	}
	return meters
}

// checkMeters checks the device ids against the addresses they name.
func (c *Config) checkMeters(k *checker) {
	ids := c.DeviceIDs
	if len(ids) == 0 {
		return
	}
	if k.ok("EM340_MODBUS_ADDRESS") && len(ids) != len(c.ModbusAddresses) {
		k.fail("EM340_DEVICE_ID", fmt.Errorf("%d ids for %d addresses in EM340_MODBUS_ADDRESS; give one per address, in the same order, or none", len(ids), len(c.ModbusAddresses)))
		return
	}
	for i, id := range ids {
		switch {
		case id == "":
			k.fail("EM340_DEVICE_ID", errors.New("an empty entry in the list"))
		case strings.ContainsFunc(id, notIDRune):
			k.fail("EM340_DEVICE_ID", fmt.Errorf("%q has a character other than letters, digits, _ and -", id))
		case id == "bridge" || strings.HasPrefix(id, "bridge_"):
			// The bridge's own topics live under <base>/bridge and its HA
			// device is em340_bridge_<base>: a meter named like that would
			// overwrite them.
			k.fail("EM340_DEVICE_ID", fmt.Errorf("%q is reserved for the bridge's own topics (bridge, bridge_…)", id))
		case slices.Contains(ids[:i], id):
			k.fail("EM340_DEVICE_ID", fmt.Errorf("%q is listed twice: each meter needs its own", id))
		}
	}
}

// SerialGateway returns the gateway when EM340_SERIAL_DEVICE names one, and
// false when it is a local serial adapter.
func (c Config) SerialGateway() (link.Gateway, bool) {
	g, err := link.ParseGateway(c.SerialDevice)
	return g, err == nil
}
