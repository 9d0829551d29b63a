package config

import "testing"

func TestParseUSBDevice(t *testing.T) {
	tests := []struct {
		in   string
		want USBDevice
		ok   bool
	}{
		{"usb:0403:6001", USBDevice{VendorID: 0x0403, ProductID: 0x6001}, true},
		{"usb:1a86:7523:A50285BI", USBDevice{VendorID: 0x1a86, ProductID: 0x7523, Serial: "A50285BI"}, true},
		{"usb:1A86:7523:a:b", USBDevice{VendorID: 0x1a86, ProductID: 0x7523, Serial: "a:b"}, true},
		{"usb:0403", USBDevice{}, false},
		{"usb:403:6001", USBDevice{}, false},
		{"usb:00403:6001", USBDevice{}, false},
		{"usb:0403:+601", USBDevice{}, false},
		{"usb:0403:6001:", USBDevice{}, false},
		{"/dev/ttyUSB0", USBDevice{}, false},
	}
	for _, tt := range tests {
		got, err := ParseUSBDevice(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseUSBDevice(%q) = %+v, %v; want %+v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestSerialUSB(t *testing.T) {
	c, err := Load([]string{"EM340_SERIAL_DEVICE=usb:0403:6001:AB0"})
	if err != nil {
		t.Fatal(err)
	}
	d, ok := c.SerialUSB()
	if !ok || d.String() != "usb:0403:6001:AB0" {
		t.Errorf("SerialUSB() = %v, %v", d, ok)
	}
	if _, ok := defaults().SerialUSB(); ok {
		t.Error("SerialUSB() true for a device path")
	}
}
