package addon

import (
	"context"
	"fmt"
	"regexp"

	"github.com/em340-bridge/em340-bridge/internal/config"
)

const (
	mqttURL      = "EM340_MQTT_URL"
	mqttUsername = "EM340_MQTT_USERNAME"
	mqttPassword = "EM340_MQTT_PASSWORD"
	mqttPassFile = "EM340_MQTT_PASSWORD_FILE"
	statusFile   = "EM340_STATUS_FILE"
)

// StatusFile is where the add-on's bridge keeps its status: on the add-on's
// tmpfs /tmp (config.yaml), not on persistent storage, and at a path that
// does not depend on the options, because the image's HEALTHCHECK runs
// without them (the Dockerfile sets the same EM340_STATUS_FILE).
const StatusFile = "/tmp/em340-bridge.status"

// Environ returns the bridge's settings as KEY=value strings, only EM340_*
// variables and in config.Variables order, from the add-on options at
// optionsPath (the Supervisor writes /data/options.json) and, when the user
// did not set mqtt_url, from the MQTT service the Supervisor offers.
//
// The user's mqtt_url wins outright, so the Supervisor is not asked and a
// broker outside Home Assistant works without Mosquitto installed. Without
// it, the broker's address comes from the Supervisor; its credentials do
// too unless the user set mqtt_username or mqtt_password, which then both
// come from the user: a user name from one source and a password from the
// other would never log in.
//
// Options left unset stay out of the result, so the bridge applies its own
// defaults; the result is meant to replace every EM340_* variable of the
// process environment. Errors never contain the broker password.
func Environ(ctx context.Context, optionsPath string, supervisor Supervisor) ([]string, error) {
	env, err := readOptions(optionsPath)
	if err != nil {
		return nil, err
	}
	if env[mqttURL] == "" {
		svc, err := supervisor.MQTT(ctx)
		if err != nil {
			return nil, fmt.Errorf("the mqtt_url option is not set, so the broker comes from the Supervisor: %w", err)
		}
		env[mqttURL] = svc.URL()
		if env[mqttUsername] == "" && env[mqttPassword] == "" && env[mqttPassFile] == "" {
			env[mqttUsername] = svc.Username
			env[mqttPassword] = svc.Password.Reveal()
		}
	}

	if env[statusFile] == "" {
		env[statusFile] = StatusFile
	}

	var environ []string
	for _, v := range config.Variables() {
		if value := env[v.Name]; value != "" {
			environ = append(environ, v.Name+"="+value)
		}
	}
	return environ, nil
}

// variableName matches the bridge's variable names in its messages.
var variableName = regexp.MustCompile(`\bEM340_[A-Z0-9_]+\b`)

// OptionNames rewrites the bridge's variable names in text (its
// configuration errors name EM340_* variables) into the add-on options the
// user actually set: EM340_MODBUS_ADDRESS becomes modbus_address.
func OptionNames(text string) string {
	known := map[string]bool{}
	for _, v := range config.Variables() {
		known[v.Name] = true
	}
	return variableName.ReplaceAllStringFunc(text, func(name string) string {
		if !known[name] {
			return name
		}
		return config.AddonOption(name)
	})
}
