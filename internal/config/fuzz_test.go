package config

import (
	"errors"
	"math"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
)

// FuzzLoad feeds fuzzed values for a dozen variables to Load. It must never
// panic; an error must consist of FieldErrors that name the variable; a
// Config it returns must satisfy every rule the variables document, and the
// bridge must be able to build its topics from it.
func FuzzLoad(f *testing.F) {
	f.Add("/dev/ttyUSB0", "9600", "mqtt://localhost", "1s", "5s", "2s", "60s", "1.5", "2m", "em340", "homeassistant", "")
	f.Add("usb:0403:6001:A10K", "115200", "mqtts://broker:8883", "10s", "500ms", "1ms", "1ms", "1", "11s", "home/em340", "ha", "kitchen")
	f.Add("relative", "9601", "mqtt://u:p@host", "0s", "1ms", "-1s", "1s", "NaN", "1s", "/em340/", "+", "a b")
	f.Add("/dev/x", "9600", "ws://[::1]", "11s", "499ms", "1s", "2562047h", "+Inf", "2562047h", "$SYS", "a//b", "bridge")
	f.Add("/dev/x", "19200", "wss://h:0", "10s", "1m", "9223372036s", "9223372036s", "1e308", "2m", "em340", "homeassistant", "bridge_em340")
	// Values Load once accepted and the bridge then refused at start (fixed).
	f.Add("/dev/x", "9600", "mqtt://h", "10s", "5s", "2s", "2562047h47m16s", "1.5", "1s", "em340", "homeassistant", "")
	f.Add("/dev/x", "9600", "mqtt://h", "1s", "5s", "2s", "60s", "1.5", "2m", "em340", "homeassistant", "bridge")
	f.Add("usb:zzzz:1", "0x2580", "mqtt://h:99999", "1e3ms", "5s", "2s", "1s", "0.5", "", "a\x00b", "homeassistant", "é")
	known := map[string]bool{}
	for _, v := range Variables() {
		known[v.Name] = true
	}
	f.Fuzz(func(t *testing.T, device, baud, mqttURL, timeout, poll, minDelay, maxDelay, factor, stall, base, prefix, deviceID string) {
		environ := []string{
			"EM340_SERIAL_DEVICE=" + device,
			"EM340_SERIAL_BAUD=" + baud,
			"EM340_MQTT_URL=" + mqttURL,
			"EM340_MODBUS_TIMEOUT=" + timeout,
			"EM340_POLL_INTERVAL=" + poll,
			"EM340_RECONNECT_MIN_DELAY=" + minDelay,
			"EM340_RECONNECT_MAX_DELAY=" + maxDelay,
			"EM340_RECONNECT_FACTOR=" + factor,
			"EM340_STALL_TIMEOUT=" + stall,
			"EM340_MQTT_BASE_TOPIC=" + base,
			"EM340_HA_DISCOVERY_PREFIX=" + prefix,
			"EM340_DEVICE_ID=" + deviceID,
			"EM340_STATUS_FILE=/tmp/em340-fuzz.status",
		}
		c, err := Load(environ)
		if err != nil {
			checkFieldErrors(t, err, known)
			return
		}
		checkInvariants(t, c)
	})
}

// checkFieldErrors: Load joins one *FieldError per rejected variable.
func checkFieldErrors(t *testing.T, err error, known map[string]bool) {
	t.Helper()
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error is not a list of field errors: %v", err)
	}
	for _, e := range joined.Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) || !known[fe.Var] || !strings.HasPrefix(e.Error(), fe.Var) {
			t.Fatalf("error %q does not name a variable", e)
		}
	}
}

func checkInvariants(t *testing.T, c Config) {
	t.Helper()
	fail := func(what string, v any) { t.Fatalf("Load accepted %s: %v (config %+v)", what, v, c) }
	_, usb := c.SerialUSB()
	_, gateway := c.SerialGateway()
	if !usb && !gateway && !filepath.IsAbs(c.SerialDevice) {
		fail("a serial device that is neither absolute, usb: nor a gateway", c.SerialDevice)
	}
	if len(c.ModbusAddresses) == 0 {
		fail("no meter address", c.ModbusAddresses)
	}
	for i, a := range c.ModbusAddresses {
		if a < 1 || a > 247 || slices.Contains(c.ModbusAddresses[:i], a) {
			fail("meter addresses", c.ModbusAddresses)
		}
	}
	if len(c.DeviceIDs) != 0 && len(c.DeviceIDs) != len(c.ModbusAddresses) {
		fail("device ids that do not pair with the addresses", c.DeviceIDs)
	}
	if !slices.Contains([]int{9600, 19200, 38400, 57600, 115200}, c.SerialBaud) {
		fail("baud", c.SerialBaud)
	}
	if c.ModbusTimeout <= 0 || c.ModbusTimeout > 10*time.Second {
		fail("timeout", c.ModbusTimeout)
	}
	if c.PollInterval < 500*time.Millisecond {
		fail("poll interval", c.PollInterval)
	}
	if c.ReconnectMinDelay <= 0 || c.ReconnectMaxDelay < c.ReconnectMinDelay {
		fail("reconnect delays", []time.Duration{c.ReconnectMinDelay, c.ReconnectMaxDelay})
	}
	if !(c.ReconnectFactor >= 1) || math.IsInf(c.ReconnectFactor, 0) {
		fail("reconnect factor", c.ReconnectFactor)
	}
	// The stall timeout must exceed the longest normal pause; computed in
	// floating point so that no sum can wrap around.
	pause := math.Max(c.PollInterval.Seconds(), c.ReconnectMaxDelay.Seconds()) + c.ModbusTimeout.Seconds()
	if c.StallTimeout.Seconds() <= pause {
		fail("a stall timeout not longer than the longest normal pause", []any{c.StallTimeout, pause})
	}
	u, err := url.Parse(c.MQTTURL)
	if err != nil || u.User != nil || u.Hostname() == "" {
		fail("broker URL", c.MQTTURL)
	}
	if port, err := strconv.Atoi(u.Port()); err != nil || port < 1 || port > 65535 {
		fail("broker URL without a valid port", c.MQTTURL)
	}
	if c.MQTTClientID == "" {
		fail("an empty client id", c.MQTTClientID)
	}
	for _, topic := range []string{c.MQTTBaseTopic, c.HADiscoveryPrefix, c.HAStatusTopic} {
		if topic == "" || strings.ContainsAny(topic, "+#\x00") || strings.HasPrefix(topic, "$") ||
			strings.HasPrefix(topic, "/") || strings.HasSuffix(topic, "/") || strings.Contains(topic, "//") {
			fail("topic", topic)
		}
	}
	// What the bridge does with these settings at start: a config that passes
	// Load must not make bridge.Run fail there.
	for _, m := range c.Meters() {
		deviceID := m.DeviceID
		if deviceID == "" {
			deviceID = "meter" // the bridge's own placeholder until the meter answers
		}
		if _, err := discovery.NewTopics(c.MQTTBaseTopic, c.HADiscoveryPrefix, deviceID); err != nil {
			fail("settings the bridge cannot build its topics from", err)
		}
	}
}
