package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func defaults() Config {
	return Config{
		SerialDevice:      "/dev/ttyUSB0",
		SerialBaud:        9600,
		SerialParity:      "none",
		SerialStopBits:    1,
		ModbusAddresses:   Addresses{1},
		ModbusTimeout:     time.Second,
		PollInterval:      5 * time.Second,
		MQTTURL:           "mqtt://localhost:1883",
		MQTTClientID:      "em340-bridge-em340",
		MQTTBaseTopic:     "em340",
		HADiscoveryPrefix: "homeassistant",
		HAStatusTopic:     "homeassistant/status",
		ReconnectMinDelay: 2 * time.Second,
		ReconnectMaxDelay: 60 * time.Second,
		ReconnectFactor:   1.5,
		OfflineAfter:      5 * time.Minute,
		LogLevel:          "info",
		LogFormat:         "text",
		StatusFile:        filepath.Join(os.TempDir(), "em340-bridge-em340.status"),
		StallTimeout:      2 * time.Minute,
	}
}

// fieldErrors flattens the joined error Load returns.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var out []*FieldError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		t.Errorf("not a *FieldError: %v", err)
	}
	walk(err)
	return out
}

func TestDefaults(t *testing.T) {
	for _, environ := range [][]string{nil, {}, {"PATH=/bin", "EM340_SERIAL_BAUD="}} {
		got, err := Load(environ)
		if err != nil {
			t.Fatalf("Load(%q): %v", environ, err)
		}
		if !reflect.DeepEqual(got, defaults()) {
			t.Errorf("Load(%q) =\n%+v\nwant\n%+v", environ, got, defaults())
		}
	}
}

func TestLoadIgnoresProcessEnvironment(t *testing.T) {
	t.Setenv("EM340_MODBUS_ADDRESS", "999")
	if _, err := Load(nil); err != nil {
		t.Fatalf("Load(nil) read the process environment: %v", err)
	}
}

func TestValid(t *testing.T) {
	dir := t.TempDir()
	ca := writeCA(t, dir)
	tests := []struct {
		env  string
		want func(*Config)
	}{
		{"EM340_SERIAL_DEVICE=/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", func(c *Config) { c.SerialDevice = "/dev/serial/by-id/usb-FTDI_FT232R-if00-port0" }},
		{"EM340_SERIAL_DEVICE=usb:0403:6001", func(c *Config) { c.SerialDevice = "usb:0403:6001" }},
		{"EM340_SERIAL_DEVICE=usb:1A86:7523:A50285BI", func(c *Config) { c.SerialDevice = "usb:1A86:7523:A50285BI" }},
		{"EM340_SERIAL_BAUD=9600", func(c *Config) {}},
		{"EM340_SERIAL_BAUD=19200", func(c *Config) { c.SerialBaud = 19200 }},
		{"EM340_SERIAL_BAUD=38400", func(c *Config) { c.SerialBaud = 38400 }},
		{"EM340_SERIAL_BAUD=57600", func(c *Config) { c.SerialBaud = 57600 }},
		{"EM340_SERIAL_BAUD=115200", func(c *Config) { c.SerialBaud = 115200 }},
		{"EM340_SERIAL_PARITY=none", func(c *Config) {}},
		{"EM340_SERIAL_PARITY=even", func(c *Config) { c.SerialParity = "even" }},
		{"EM340_SERIAL_PARITY=ODD", func(c *Config) { c.SerialParity = "odd" }},
		{"EM340_SERIAL_STOP_BITS=1", func(c *Config) {}},
		{"EM340_SERIAL_STOP_BITS=2", func(c *Config) { c.SerialStopBits = 2 }},
		{"EM340_MODBUS_ADDRESS=247", func(c *Config) { c.ModbusAddresses = Addresses{247} }},
		{"EM340_MODBUS_ADDRESS=1,2,5", func(c *Config) { c.ModbusAddresses = Addresses{1, 2, 5} }},
		{"EM340_MODBUS_ADDRESS=5,1", func(c *Config) { c.ModbusAddresses = Addresses{5, 1} }}, // the order given
		{"EM340_MODBUS_ADDRESS=1,2 EM340_DEVICE_ID=main,heat_pump", func(c *Config) {
			c.ModbusAddresses, c.DeviceIDs = Addresses{1, 2}, DeviceIDs{"main", "heat_pump"}
		}},
		{"EM340_SERIAL_DEVICE=rtuovertcp://192.0.2.7:4196", func(c *Config) { c.SerialDevice = "rtuovertcp://192.0.2.7:4196" }},
		{"EM340_SERIAL_DEVICE=tcp://gateway.lan", func(c *Config) { c.SerialDevice = "tcp://gateway.lan:502" }},
		{"EM340_SERIAL_DEVICE=TCP://[2001:db8::7]:1502", func(c *Config) { c.SerialDevice = "tcp://[2001:db8::7]:1502" }},
		{"EM340_MODBUS_TIMEOUT=10s", func(c *Config) { c.ModbusTimeout = 10 * time.Second }},
		{"EM340_MODBUS_TIMEOUT=610ms", func(c *Config) { c.ModbusTimeout = 610 * time.Millisecond }},
		{"EM340_SERIAL_BAUD=115200 EM340_MODBUS_TIMEOUT=510ms", func(c *Config) { c.SerialBaud, c.ModbusTimeout = 115200, 510*time.Millisecond }},
		{"EM340_POLL_INTERVAL=500ms", func(c *Config) { c.PollInterval = 500 * time.Millisecond }},
		{"EM340_MQTT_URL=mqtt://broker.lan", func(c *Config) { c.MQTTURL = "mqtt://broker.lan:1883" }},
		{"EM340_MQTT_URL=mqtts://broker.lan", func(c *Config) { c.MQTTURL = "mqtts://broker.lan:8883" }},
		{"EM340_MQTT_URL=ws://[::1]/mqtt", func(c *Config) { c.MQTTURL = "ws://[::1]:80/mqtt" }},
		{"EM340_MQTT_URL=WSS://broker.lan:8443/mqtt", func(c *Config) { c.MQTTURL = "wss://broker.lan:8443/mqtt" }},
		{"EM340_MQTT_USERNAME=em340", func(c *Config) { c.MQTTUsername = "em340" }},
		{"EM340_MQTT_PASSWORD=pw", func(c *Config) { c.MQTTPassword = "pw" }},
		{"EM340_MQTT_CLIENT_ID=garage", func(c *Config) {
			c.MQTTClientID, c.StatusFile = "garage", filepath.Join(os.TempDir(), "garage.status")
		}},
		{"EM340_MQTT_BASE_TOPIC=home/garage/em340", func(c *Config) {
			c.MQTTBaseTopic = "home/garage/em340"
			c.MQTTClientID = "em340-bridge-home-garage-em340"
			c.StatusFile = filepath.Join(os.TempDir(), "em340-bridge-home-garage-em340.status") // per instance
		}},
		{"EM340_HA_DISCOVERY_PREFIX=ha", func(c *Config) { c.HADiscoveryPrefix = "ha" }},
		{"EM340_HA_STATUS_TOPIC=ha/status", func(c *Config) { c.HAStatusTopic = "ha/status" }},
		{"EM340_DEVICE_ID=garage_meter-1", func(c *Config) { c.DeviceIDs = DeviceIDs{"garage_meter-1"} }},
		{"EM340_RECONNECT_MIN_DELAY=60s", func(c *Config) { c.ReconnectMinDelay = time.Minute }},
		{"EM340_RECONNECT_FACTOR=1", func(c *Config) { c.ReconnectFactor = 1 }},
		{"EM340_OFFLINE_AFTER=0s", func(c *Config) { c.OfflineAfter = 0 }},
		{"EM340_LOG_LEVEL=debug", func(c *Config) { c.LogLevel = "debug" }},
		{"EM340_LOG_LEVEL=info", func(c *Config) {}},
		{"EM340_LOG_LEVEL=warn", func(c *Config) { c.LogLevel = "warn" }},
		{"EM340_LOG_LEVEL=ERROR", func(c *Config) { c.LogLevel = "error" }},
		{"EM340_LOG_FORMAT=text", func(c *Config) {}},
		{"EM340_LOG_FORMAT=json", func(c *Config) { c.LogFormat = "json" }},
		{"EM340_STATUS_FILE=/run/em340/status", func(c *Config) { c.StatusFile = "/run/em340/status" }},
		{"EM340_STALL_TIMEOUT=62s", func(c *Config) { c.StallTimeout = 62 * time.Second }},
		{"EM340_MQTT_URL=mqtts://b EM340_MQTT_CA_FILE=" + ca + " EM340_MQTT_INSECURE=true", func(c *Config) {
			c.MQTTURL, c.MQTTCAFile, c.MQTTInsecure = "mqtts://b:8883", ca, true
		}},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			got, err := Load(strings.Fields(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			tt.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestInvalid(t *testing.T) {
	dir := t.TempDir()
	ca := writeCA(t, dir)
	notPEM := filepath.Join(dir, "not.pem")
	empty := filepath.Join(dir, "empty")
	for _, f := range []string{notPEM, empty} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		env     string
		wantVar string
	}{
		{"EM340_SERIAL_DEVICE=ttyUSB0", "EM340_SERIAL_DEVICE"},
		{"EM340_SERIAL_DEVICE=usb:403:6001", "EM340_SERIAL_DEVICE"},
		{"EM340_SERIAL_DEVICE=usb:0403", "EM340_SERIAL_DEVICE"},
		{"EM340_SERIAL_DEVICE=usb:0403:60g1", "EM340_SERIAL_DEVICE"},
		{"EM340_SERIAL_DEVICE=usb:0403:6001:", "EM340_SERIAL_DEVICE"},
		{"EM340_SERIAL_BAUD=1234", "EM340_SERIAL_BAUD"},
		{"EM340_SERIAL_BAUD=fast", "EM340_SERIAL_BAUD"},
		{"EM340_SERIAL_PARITY=mark", "EM340_SERIAL_PARITY"},
		{"EM340_SERIAL_STOP_BITS=3", "EM340_SERIAL_STOP_BITS"},
		{"EM340_MODBUS_ADDRESS=999", "EM340_MODBUS_ADDRESS"},
		{"EM340_MODBUS_ADDRESS=0", "EM340_MODBUS_ADDRESS"},
		{"EM340_MODBUS_ADDRESS=1,1", "EM340_MODBUS_ADDRESS"},
		{"EM340_MODBUS_ADDRESS=1,,2", "EM340_MODBUS_ADDRESS"},
		{"EM340_MODBUS_ADDRESS=1,248", "EM340_MODBUS_ADDRESS"},
		{"EM340_MODBUS_ADDRESS=1;2", "EM340_MODBUS_ADDRESS"},
		{"EM340_MODBUS_ADDRESS=1,2 EM340_DEVICE_ID=main", "EM340_DEVICE_ID"},
		{"EM340_MODBUS_ADDRESS=1,2 EM340_DEVICE_ID=main,main", "EM340_DEVICE_ID"},
		{"EM340_MODBUS_ADDRESS=1,2 EM340_DEVICE_ID=main,", "EM340_DEVICE_ID"},
		{"EM340_SERIAL_DEVICE=udp://gateway.lan:502", "EM340_SERIAL_DEVICE"},
		{"EM340_SERIAL_DEVICE=tcp://:502", "EM340_SERIAL_DEVICE"},
		{"EM340_SERIAL_DEVICE=tcp://gateway.lan:70000", "EM340_SERIAL_DEVICE"},
		{"EM340_SERIAL_DEVICE=rtuovertcp://u:p@gateway.lan", "EM340_SERIAL_DEVICE"},
		{"EM340_SERIAL_DEVICE=tcp://gateway.lan/modbus", "EM340_SERIAL_DEVICE"},
		{"EM340_MODBUS_TIMEOUT=0s", "EM340_MODBUS_TIMEOUT"},
		{"EM340_MODBUS_TIMEOUT=-1s", "EM340_MODBUS_TIMEOUT"},
		{"EM340_MODBUS_TIMEOUT=11s", "EM340_MODBUS_TIMEOUT"},
		{"EM340_MODBUS_TIMEOUT=600ms", "EM340_MODBUS_TIMEOUT"}, // 9600 baud needs 610ms
		{"EM340_MODBUS_TIMEOUT=300ms", "EM340_MODBUS_TIMEOUT"},
		{"EM340_MODBUS_TIMEOUT=1", "EM340_MODBUS_TIMEOUT"},
		{"EM340_POLL_INTERVAL=100ms", "EM340_POLL_INTERVAL"},
		{"EM340_MQTT_URL=http://x", "EM340_MQTT_URL"},
		{"EM340_MQTT_URL=mqtt://", "EM340_MQTT_URL"},
		{"EM340_MQTT_URL=broker.lan:1883", "EM340_MQTT_URL"},
		{"EM340_MQTT_URL=mqtt://b:70000", "EM340_MQTT_URL"},
		{"EM340_MQTT_URL=mqtt://u:p@b", "EM340_MQTT_URL"},
		{"EM340_MQTT_URL=mqtt://[:]:1883", "EM340_MQTT_URL"},
		{"EM340_MQTT_PASSWORD_FILE=" + filepath.Join(dir, "missing"), "EM340_MQTT_PASSWORD_FILE"},
		{"EM340_MQTT_PASSWORD_FILE=" + dir, "EM340_MQTT_PASSWORD_FILE"},
		{"EM340_MQTT_PASSWORD_FILE=" + empty, "EM340_MQTT_PASSWORD_FILE"},
		{"EM340_MQTT_CLIENT_ID=a\x01b", "EM340_MQTT_CLIENT_ID"},
		{"EM340_MQTT_BASE_TOPIC=em340/#", "EM340_MQTT_BASE_TOPIC"},
		{"EM340_MQTT_BASE_TOPIC=a/+/b", "EM340_MQTT_BASE_TOPIC"},
		{"EM340_MQTT_BASE_TOPIC=/em340", "EM340_MQTT_BASE_TOPIC"},
		{"EM340_MQTT_BASE_TOPIC=em340/", "EM340_MQTT_BASE_TOPIC"},
		{"EM340_MQTT_BASE_TOPIC=a//b", "EM340_MQTT_BASE_TOPIC"},
		{"EM340_MQTT_BASE_TOPIC=$SYS", "EM340_MQTT_BASE_TOPIC"},
		{"EM340_HA_DISCOVERY_PREFIX=homeassistant/#", "EM340_HA_DISCOVERY_PREFIX"},
		{"EM340_HA_STATUS_TOPIC=homeassistant/+", "EM340_HA_STATUS_TOPIC"},
		{"EM340_MQTT_CA_FILE=" + ca, "EM340_MQTT_CA_FILE"}, // with the default mqtt://
		{"EM340_MQTT_URL=mqtts://b EM340_MQTT_CA_FILE=" + notPEM, "EM340_MQTT_CA_FILE"},
		{"EM340_MQTT_URL=wss://b EM340_MQTT_CA_FILE=" + filepath.Join(dir, "missing"), "EM340_MQTT_CA_FILE"},
		{"EM340_MQTT_INSECURE=true", "EM340_MQTT_INSECURE"},
		{"EM340_MQTT_URL=mqtts://b EM340_MQTT_INSECURE=yes", "EM340_MQTT_INSECURE"},
		{"EM340_DEVICE_ID=my.meter", "EM340_DEVICE_ID"},
		{"EM340_DEVICE_ID=bridge", "EM340_DEVICE_ID"},
		{"EM340_DEVICE_ID=bridge_em340", "EM340_DEVICE_ID"},
		{"EM340_RECONNECT_MAX_DELAY=2562047h47m16s EM340_STALL_TIMEOUT=1h", "EM340_STALL_TIMEOUT"}, // the sum must not wrap
		{"EM340_RECONNECT_MIN_DELAY=0s", "EM340_RECONNECT_MIN_DELAY"},
		{"EM340_RECONNECT_MAX_DELAY=1s", "EM340_RECONNECT_MAX_DELAY"},
		{"EM340_RECONNECT_FACTOR=0.5", "EM340_RECONNECT_FACTOR"},
		{"EM340_RECONNECT_FACTOR=+Inf", "EM340_RECONNECT_FACTOR"},
		{"EM340_RECONNECT_FACTOR=NaN", "EM340_RECONNECT_FACTOR"},
		{"EM340_OFFLINE_AFTER=-1s", "EM340_OFFLINE_AFTER"},
		{"EM340_LOG_LEVEL=trace", "EM340_LOG_LEVEL"},
		{"EM340_LOG_FORMAT=logfmt", "EM340_LOG_FORMAT"},
		{"EM340_STATUS_FILE=em340.status", "EM340_STATUS_FILE"},
		{"EM340_STALL_TIMEOUT=61s", "EM340_STALL_TIMEOUT"},
		{"EM340_POLL_INTERVAL=3m", "EM340_STALL_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			_, err := Load(strings.Fields(tt.env))
			if err == nil {
				t.Fatal("Load succeeded")
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Var != tt.wantVar {
				t.Fatalf("error %q: want a *FieldError for %s", err, tt.wantVar)
			}
			if fes := fieldErrors(t, err); len(fes) != 1 {
				t.Errorf("want exactly one problem, got %q", err)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, tt.wantVar) || !strings.Contains(msg, "allowed: ") {
				t.Errorf("error %q does not start with %s and say what is allowed", msg, tt.wantVar)
			}
		})
	}
}

func TestInvalidReportsAll(t *testing.T) {
	_, err := Load([]string{
		"EM340_LOG_FORMAT=xml",
		"EM340_MODBUS_ADDRESS=999",
		"EM340_SERIAL_BAUD=fast",
		"EM340_RECONNECT_FACTOR=0.5",
		"EM340_MQTT_URL=mqtt://",
	})
	var got []string
	for _, fe := range fieldErrors(t, err) {
		got = append(got, fe.Var)
	}
	// In declaration order, whatever order the checks ran in.
	want := []string{"EM340_SERIAL_BAUD", "EM340_MODBUS_ADDRESS", "EM340_MQTT_URL", "EM340_RECONNECT_FACTOR", "EM340_LOG_FORMAT"}
	if !slices.Equal(got, want) {
		t.Errorf("problems for %v, want %v; error: %v", got, want, err)
	}
}

func TestFieldErrorText(t *testing.T) {
	_, err := Load([]string{"EM340_MODBUS_ADDRESS=999"})
	const want = `EM340_MODBUS_ADDRESS="999": 999 is out of range; allowed: 1–247, or several separated by commas (1,2,5), each once`
	if err == nil || err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestTopicsWithSurroundingSpaceAreRejected(t *testing.T) {
	for _, v := range []string{"EM340_MQTT_BASE_TOPIC", "EM340_HA_DISCOVERY_PREFIX", "EM340_HA_STATUS_TOPIC"} {
		for _, value := range []string{"   ", " em340", "em340\t"} {
			_, err := Load([]string{v + "=" + value})
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Var != v {
				t.Errorf("%s=%q: err %v", v, value, err)
			}
		}
	}
}
