package addon_test

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// supervisorValidates is what the Supervisor's option check
// (_single_validate in supervisor/apps/options.py) makes of value for one
// schema type: the value it writes to options.json, and whether it accepts
// it. Only the types config.yaml uses are modelled.
func supervisorValidates(t *testing.T, typ string, value any) (any, bool) {
	t.Helper()
	parts := schemaType().FindStringSubmatch(typ)
	if parts == nil {
		t.Fatalf("schema type %q is not one the Supervisor knows", typ)
	}
	group := func(g string) string { return parts[schemaType().SubexpIndex(g)] }
	str := fmt.Sprint(value) // Python's str() for the strings and ints used here
	switch {
	case strings.HasPrefix(typ, "str"), strings.HasPrefix(typ, "password"):
		return str, true // no length limits in config.yaml
	case strings.HasPrefix(typ, "int"):
		n, err := strconv.Atoi(str)
		lo, _ := strconv.Atoi(group("i_min"))
		hi, _ := strconv.Atoi(group("i_max"))
		return n, err == nil && n >= lo && n <= hi
	case strings.HasPrefix(typ, "match("):
		// vol.Match is re.match: anchored at the start only.
		re := regexp.MustCompile("^(?:" + group("match") + ")")
		return str, re.MatchString(str)
	case strings.HasPrefix(typ, "list("):
		return str, slices.Contains(strings.Split(group("list"), "|"), str)
	}
	t.Fatalf("schema type %q is not modelled", typ)
	return nil, false
}

// The device and address options take what the bridge takes, through the
// Supervisor's check and the add-on's mapping unchanged: a serial device or
// a Modbus gateway's URL; one address or a comma-separated list. An address
// an older version saved as a number still passes.
func TestOptionValuesReachTheBridge(t *testing.T) {
	schema := readManifest(t).Schema
	_, sup := serve(t, http.StatusOK, mosquittoReply)
	for _, tc := range []struct {
		option  string
		value   any
		written string // what options.json then holds; "" = refused
	}{
		{"serial_device", "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KXYZ-if00-port0", "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KXYZ-if00-port0"},
		{"serial_device", "usb:0403:6001", "usb:0403:6001"},
		{"serial_device", "rtuovertcp://192.168.1.40:502", "rtuovertcp://192.168.1.40:502"},
		{"serial_device", "tcp://modbus-gateway.lan:502", "tcp://modbus-gateway.lan:502"},
		{"modbus_address", 1, "1"}, // saved as an int by version 0.1.0
		{"modbus_address", "1", "1"},
		{"modbus_address", "247", "247"},
		{"modbus_address", "1,2,5", "1,2,5"},
		{"modbus_address", "10,99,100,199,200,239,240,247", "10,99,100,199,200,239,240,247"},
		{"modbus_address", "0", ""},
		{"modbus_address", "248", ""},
		{"modbus_address", "250", ""},
		{"modbus_address", "01", ""},
		{"modbus_address", "1,", ""},
		{"modbus_address", ",1", ""},
		{"modbus_address", "1,,2", ""},
		{"modbus_address", "1, 2", ""},
		{"modbus_address", "1;2", ""},
		{"modbus_address", "one", ""},
		{"modbus_address", "", ""},
	} {
		t.Run(fmt.Sprintf("%s=%v", tc.option, tc.value), func(t *testing.T) {
			written, ok := supervisorValidates(t, schema[tc.option], tc.value)
			if ok != (tc.written != "") {
				t.Fatalf("the Supervisor accepts it: %v, want %v", ok, tc.written != "")
			}
			if !ok {
				return
			}
			if written != tc.written {
				t.Errorf("the Supervisor writes %q, want %q", written, tc.written)
			}
			environ, err := environWithoutStatus(t, writeOptions(t, map[string]any{tc.option: written}), sup)
			if err != nil {
				t.Fatal(err)
			}
			want := variablesByOption()[tc.option].Name + "=" + tc.written
			if !slices.Contains(environ, want) {
				t.Errorf("Environ = %q, want %s", environ, want)
			}
			mustLoad(t, environ) // and the bridge takes what the Supervisor let through
		})
	}
}
