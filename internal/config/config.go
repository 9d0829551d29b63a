// Package config holds the bridge's settings, read from EM340_* environment
// variables and checked.
package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Config is the bridge's settings. Each field is declared once, here: its
// variable (env), default (envDefault), allowed values (allowed) and meaning
// (doc). Variables, the docs, config.yaml.example and the add-on mapping are
// all derived from or checked against these tags.
type Config struct {
	SerialDevice    string        `env:"EM340_SERIAL_DEVICE" envDefault:"/dev/ttyUSB0" allowed:"an absolute path such as /dev/ttyUSB0 or /dev/serial/by-id/…, usb:VID:PID[:SERIAL] with VID and PID as 4 hex digits, or a Modbus gateway as rtuovertcp://host[:port] or tcp://host[:port] (port 502 if left out)" doc:"the USB-RS485 adapter the meters are wired to; usb:… finds it by USB identity wherever it is plugged in; rtuovertcp:// reaches them through an RS485-to-Ethernet gateway passing RTU frames, tcp:// through a Modbus TCP gateway (the serial settings are the gateway's business then and ignored)"`
	SerialBaud      int           `env:"EM340_SERIAL_BAUD" envDefault:"9600" allowed:"9600, 19200, 38400, 57600, 115200" doc:"serial speed; must match the meter's setting"`
	SerialParity    string        `env:"EM340_SERIAL_PARITY" envDefault:"none" allowed:"none, even, odd" doc:"serial parity; must match the meter's setting"`
	SerialStopBits  int           `env:"EM340_SERIAL_STOP_BITS" envDefault:"1" allowed:"1, 2" doc:"serial stop bits; must match the meter's setting"`
	ModbusAddresses Addresses     `env:"EM340_MODBUS_ADDRESS" envDefault:"1" allowed:"1–247, or several separated by commas (1,2,5), each once" doc:"the Modbus addresses of the meters on the line; each meter is a device of its own in Home Assistant"`
	ModbusTimeout   time.Duration `env:"EM340_MODBUS_TIMEOUT" envDefault:"1s" allowed:"a duration <= 10s and at least the meter's 500ms answer window plus the wire time of a 50-register reply (610ms at 9600 baud, 510ms at 115200)" doc:"how long to wait for the meter to answer one request"`
	PollInterval    time.Duration `env:"EM340_POLL_INTERVAL" envDefault:"5s" allowed:"a duration >= 500ms" doc:"time between two readings of the meter; one reading takes a few Modbus round trips, so less than 500ms would overlap at 9600 baud"`

	MQTTURL          string `env:"EM340_MQTT_URL" envDefault:"mqtt://localhost:1883" allowed:"mqtt://, mqtts://, ws:// or wss:// with a host and without user:password@; the port defaults to 1883, 8883, 80 or 443" doc:"the MQTT broker"`
	MQTTUsername     string `env:"EM340_MQTT_USERNAME" allowed:"any text; empty = no username" doc:"user name at the broker"`
	MQTTPassword     Secret `env:"EM340_MQTT_PASSWORD" allowed:"any text; not together with EM340_MQTT_PASSWORD_FILE" doc:"password at the broker"`
	MQTTPasswordFile string `env:"EM340_MQTT_PASSWORD_FILE" allowed:"a readable, non-empty file; not together with EM340_MQTT_PASSWORD" doc:"file holding the password at the broker (e.g. a Docker secret); a trailing newline is dropped"`
	MQTTClientID     string `env:"EM340_MQTT_CLIENT_ID" allowed:"UTF-8 text without control characters" doc:"MQTT client id; empty = em340-bridge-<base topic> with / replaced by -"`
	MQTTBaseTopic    string `env:"EM340_MQTT_BASE_TOPIC" envDefault:"em340" allowed:"an MQTT topic without + or #, not starting with $ or /, not ending with /, without empty levels" doc:"topic namespace of this bridge instance; run several bridges with different base topics"`
	MQTTCAFile       string `env:"EM340_MQTT_CA_FILE" allowed:"a readable PEM file with CA certificates; only with mqtts:// or wss://" doc:"CA certificates that sign the broker's certificate; empty = the system's"`
	MQTTInsecure     bool   `env:"EM340_MQTT_INSECURE" envDefault:"false" allowed:"true or false; true only with mqtts:// or wss://" doc:"skip verifying the broker's TLS certificate (testing only)"`

	HADiscoveryPrefix string    `env:"EM340_HA_DISCOVERY_PREFIX" envDefault:"homeassistant" allowed:"an MQTT topic without + or #, not starting with $ or /, not ending with /, without empty levels" doc:"Home Assistant's MQTT discovery prefix"`
	HAStatusTopic     string    `env:"EM340_HA_STATUS_TOPIC" envDefault:"homeassistant/status" allowed:"an MQTT topic without + or #, not starting with $ or /, not ending with /, without empty levels" doc:"Home Assistant's birth topic; the bridge re-announces its entities when HA comes online"`
	DeviceIDs         DeviceIDs `env:"EM340_DEVICE_ID" allowed:"empty, or letters, digits, _ and -; with several addresses one id per address, comma-separated, in the same order, each once" doc:"the meters' identities in topics and Home Assistant; empty = each meter's serial number"`

	ReconnectMinDelay time.Duration `env:"EM340_RECONNECT_MIN_DELAY" envDefault:"2s" allowed:"a duration > 0s" doc:"first wait before reopening the serial adapter after it was lost (the MQTT broker is retried on its own quick schedule)"`
	ReconnectMaxDelay time.Duration `env:"EM340_RECONNECT_MAX_DELAY" envDefault:"60s" allowed:"a duration >= EM340_RECONNECT_MIN_DELAY" doc:"longest wait between reconnect attempts"`
	ReconnectFactor   float64       `env:"EM340_RECONNECT_FACTOR" envDefault:"1.5" allowed:"a number >= 1" doc:"each failed attempt multiplies the wait by this"`
	OfflineAfter      time.Duration `env:"EM340_OFFLINE_AFTER" envDefault:"5m" allowed:"a duration >= 0s" doc:"how long the meter may stay unreachable (reconnecting) before Home Assistant shows it offline"`

	LogLevel  string `env:"EM340_LOG_LEVEL" envDefault:"info" allowed:"debug, info, warn, error" doc:"least severe log messages written"`
	LogFormat string `env:"EM340_LOG_FORMAT" envDefault:"text" allowed:"text, json" doc:"log line format"`

	StatusFile   string        `env:"EM340_STATUS_FILE" allowed:"an absolute file path; empty = <temporary directory>/<MQTT client id>.status" doc:"file the bridge rewrites after every poll cycle; the health check reads it (per instance by default)"`
	StallTimeout time.Duration `env:"EM340_STALL_TIMEOUT" envDefault:"2m" allowed:"a duration > the larger of EM340_POLL_INTERVAL and EM340_RECONNECT_MAX_DELAY, plus EM340_MODBUS_TIMEOUT" doc:"without a finished poll cycle for this long the health check fails and the watchdog stops the bridge so it gets restarted"`
}

// Load reads the settings from environ (KEY=value strings, as os.Environ
// returns) and checks them. Unset or empty variables take their defaults.
// All problems are reported together, each as a *FieldError.
func Load(environ []string) (Config, error) {
	// ToMap never returns nil; a nil Environment would make env fall back
	// to the process environment, which Load must not read.
	vars := env.ToMap(environ)
	k := newChecker(vars)

	var c Config
	if err := env.ParseWithOptions(&c, env.Options{Environment: vars}); err != nil {
		if err := k.parseFailures(err); err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
	}
	c.validate(k)
	if err := errors.Join(k.sorted()...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// AddonOption is the Home Assistant add-on option that sets variable:
// lowercase, without the EM340_ prefix (EM340_SERIAL_DEVICE → serial_device).
// It returns "" for names that are not EM340_* variables.
func AddonOption(variable string) string {
	name, ok := strings.CutPrefix(variable, envPrefix)
	if !ok {
		return ""
	}
	return strings.ToLower(name)
}

// defaultClientID is the MQTT client id used when EM340_MQTT_CLIENT_ID is
// empty. Slashes become dashes because brokers substitute the client id into
// ACL topic patterns, where a / would add levels.
func defaultClientID(baseTopic string) string {
	return "em340-bridge-" + strings.ReplaceAll(baseTopic, "/", "-")
}

const envPrefix = "EM340_"
