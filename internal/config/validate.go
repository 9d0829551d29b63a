package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/em340-bridge/em340-bridge/link"
)

const (
	maxModbusTimeout = 10 * time.Second
	// minPollInterval leaves room for one reading: a few Modbus round trips
	// of ~50–100 ms each at 9600 baud.
	minPollInterval = 500 * time.Millisecond
)

// validate checks c in place, normalising case-insensitive values, adding
// the broker's default port, reading the password file and deriving the
// client id. Problems go to k.
func (c *Config) validate(k *checker) {
	c.checkSerial(k)
	c.checkMQTT(k)
	c.checkTiming(k)

	for _, t := range []struct{ name, topic string }{
		{"EM340_MQTT_BASE_TOPIC", c.MQTTBaseTopic},
		{"EM340_HA_DISCOVERY_PREFIX", c.HADiscoveryPrefix},
		{"EM340_HA_STATUS_TOPIC", c.HAStatusTopic},
	} {
		if err := checkTopic(t.topic); err != nil {
			k.fail(t.name, err)
		}
	}
	if c.MQTTClientID == "" && k.ok("EM340_MQTT_BASE_TOPIC") {
		c.MQTTClientID = defaultClientID(c.MQTTBaseTopic)
	}
	k.check("EM340_MQTT_CLIENT_ID", utf8.ValidString(c.MQTTClientID) && !strings.ContainsFunc(c.MQTTClientID, unicode.IsControl), "not UTF-8 text without control characters")
	c.checkMeters(k)

	c.LogLevel = strings.ToLower(c.LogLevel)
	k.check("EM340_LOG_LEVEL", slices.Contains([]string{"debug", "info", "warn", "error"}, c.LogLevel), "unknown level")
	c.LogFormat = strings.ToLower(c.LogFormat)
	k.check("EM340_LOG_FORMAT", slices.Contains([]string{"text", "json"}, c.LogFormat), "unknown format")
	if c.StatusFile == "" && k.ok("EM340_MQTT_CLIENT_ID") {
		c.StatusFile = defaultStatusFile(c.MQTTClientID)
	}
	k.check("EM340_STATUS_FILE", c.StatusFile == "" || filepath.IsAbs(c.StatusFile), "not an absolute path")
}

// defaultStatusFile is per instance: named after the MQTT client id, which a
// broker lets only one running client have, so one bridge's health never
// answers for another's on the same host.
func defaultStatusFile(clientID string) string {
	name := strings.Map(func(r rune) rune {
		if r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.') {
			return r
		}
		return '_'
	}, clientID)
	return filepath.Join(os.TempDir(), name+".status")
}

func (c *Config) checkSerial(k *checker) {
	if link.IsGatewayURL(c.SerialDevice) {
		g, err := link.ParseGateway(c.SerialDevice)
		if err != nil {
			k.fail("EM340_SERIAL_DEVICE", err)
		} else {
			c.SerialDevice = g.String()
		}
	} else if strings.HasPrefix(c.SerialDevice, usbPrefix) {
		if _, err := ParseUSBDevice(c.SerialDevice); err != nil {
			k.fail("EM340_SERIAL_DEVICE", err)
		}
	} else {
		// The device is not opened here: an adapter may be plugged in later,
		// and the bridge keeps retrying.
		k.check("EM340_SERIAL_DEVICE", filepath.IsAbs(c.SerialDevice), "not an absolute path, usb:VID:PID[:SERIAL] or a gateway URL")
	}
	k.check("EM340_SERIAL_BAUD", slices.Contains([]int{9600, 19200, 38400, 57600, 115200}, c.SerialBaud), "unsupported baud rate")
	c.SerialParity = strings.ToLower(c.SerialParity)
	k.check("EM340_SERIAL_PARITY", slices.Contains([]string{"none", "even", "odd"}, c.SerialParity), "unknown parity")
	k.check("EM340_SERIAL_STOP_BITS", c.SerialStopBits == 1 || c.SerialStopBits == 2, "unsupported number of stop bits")
}

func (c *Config) checkMQTT(k *checker) {
	u, err := brokerURL(c.MQTTURL)
	if err != nil {
		k.fail("EM340_MQTT_URL", err)
	} else {
		c.MQTTURL = u.String()
	}
	// TLS settings with a plain-text URL are rejected rather than ignored:
	// whoever set them expects an encrypted connection.
	plain := err == nil && !isTLS(u.Scheme)
	if c.MQTTCAFile != "" {
		if plain {
			k.fail("EM340_MQTT_CA_FILE", errors.New("set, but EM340_MQTT_URL is not mqtts:// or wss://"))
		} else if _, err := loadCAs(c.MQTTCAFile); err != nil {
			k.fail("EM340_MQTT_CA_FILE", err)
		}
	}
	k.check("EM340_MQTT_INSECURE", !c.MQTTInsecure || !plain, "true, but EM340_MQTT_URL is not mqtts:// or wss://")

	if c.MQTTPasswordFile == "" {
		return
	}
	if c.MQTTPassword != "" {
		k.fail("EM340_MQTT_PASSWORD_FILE", errors.New("set together with EM340_MQTT_PASSWORD"))
		return
	}
	b, err := os.ReadFile(c.MQTTPasswordFile)
	if err != nil {
		k.fail("EM340_MQTT_PASSWORD_FILE", fmt.Errorf("cannot read: %w", err))
		return
	}
	// Secrets written with echo or an editor end in a newline that is not
	// part of the password.
	c.MQTTPassword = Secret(strings.TrimRight(string(b), "\r\n"))
	k.check("EM340_MQTT_PASSWORD_FILE", c.MQTTPassword != "", "the file is empty")
}

// MinModbusTimeout is the shortest request timeout that lets the meter answer:
// its 500 ms answer window plus the wire time of the largest reply (50
// registers: 105 bytes of 10 bits) at baud. Shorter, a slow but healthy
// answer arrives after the bridge gave up.
func MinModbusTimeout(baud int) time.Duration {
	const answerWindow = 500 * time.Millisecond
	const largestReply = 5 + 2*50 // address, function, count, data, CRC
	if baud <= 0 {
		return answerWindow
	}
	return answerWindow + time.Duration(largestReply*10)*time.Second/time.Duration(baud)
}

func (c *Config) checkTiming(k *checker) {
	k.check("EM340_MODBUS_TIMEOUT", c.ModbusTimeout > 0 && c.ModbusTimeout <= maxModbusTimeout, "out of range")
	if k.ok("EM340_MODBUS_TIMEOUT") && k.ok("EM340_SERIAL_BAUD") {
		least := MinModbusTimeout(c.SerialBaud)
		k.check("EM340_MODBUS_TIMEOUT", c.ModbusTimeout >= least,
			fmt.Sprintf("shorter than %v, the meter's 500 ms answer window plus the largest reply at %d baud", least.Round(time.Millisecond), c.SerialBaud))
	}
	k.check("EM340_POLL_INTERVAL", c.PollInterval >= minPollInterval, "too short")
	k.check("EM340_RECONNECT_MIN_DELAY", c.ReconnectMinDelay > 0, "not positive")
	if k.ok("EM340_RECONNECT_MIN_DELAY") {
		k.check("EM340_RECONNECT_MAX_DELAY", c.ReconnectMaxDelay >= c.ReconnectMinDelay, "less than EM340_RECONNECT_MIN_DELAY")
	}
	k.check("EM340_RECONNECT_FACTOR", c.ReconnectFactor >= 1, "less than 1")
	k.check("EM340_RECONNECT_FACTOR", !math.IsInf(c.ReconnectFactor, 1), "infinite")
	k.check("EM340_OFFLINE_AFTER", c.OfflineAfter >= 0, "negative")

	// A stall is only detectable once the longest legitimate pause between
	// two cycles (a poll wait or a reconnect wait, plus a request timing
	// out) has passed.
	if k.ok("EM340_POLL_INTERVAL") && k.ok("EM340_RECONNECT_MAX_DELAY") && k.ok("EM340_MODBUS_TIMEOUT") {
		pause := max(c.PollInterval, c.ReconnectMaxDelay)
		if pause > math.MaxInt64-c.ModbusTimeout {
			pause = math.MaxInt64 // no sum can be waited out; saturate rather than wrap
		} else {
			pause += c.ModbusTimeout
		}
		k.check("EM340_STALL_TIMEOUT", c.StallTimeout > pause, fmt.Sprintf("not longer than %v, the longest normal pause", pause))
	}
}

// checkTopic accepts a topic the bridge can publish under and prefix.
func checkTopic(t string) error {
	switch {
	case t == "":
		return errors.New("empty")
	case !utf8.ValidString(t) || strings.ContainsFunc(t, unicode.IsControl):
		return errors.New("not UTF-8 text without control characters")
	case strings.TrimSpace(t) != t:
		return errors.New("starts or ends with white space")
	case strings.ContainsAny(t, "+#"):
		return errors.New("contains a wildcard (+ or #)")
	case strings.HasPrefix(t, "$"):
		// $-topics belong to the broker ($SYS) and are not matched by #.
		return errors.New("starts with $")
	case strings.HasPrefix(t, "/") || strings.HasSuffix(t, "/"):
		return errors.New("starts or ends with /")
	case strings.Contains(t, "//"):
		return errors.New("has an empty level (//)")
	}
	return nil
}

func notIDRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
}
