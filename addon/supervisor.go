package addon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/config"
)

// DefaultSupervisorURL is where add-on containers reach the Supervisor.
const DefaultSupervisorURL = "http://supervisor"

// Supervisor is the Home Assistant Supervisor API as seen from inside the
// add-on container.
type Supervisor struct {
	URL        string       // "" = DefaultSupervisorURL
	Token      string       // the container's SUPERVISOR_TOKEN
	HTTPClient *http.Client // nil = a client with a 10 s timeout
}

// MQTTService is the broker another add-on (usually Mosquitto) registered
// with the Supervisor.
type MQTTService struct {
	Host     string
	Port     int
	SSL      bool
	Username string
	Password config.Secret // redacted when printed, so a logged service leaks nothing
}

// URL is the broker address in EM340_MQTT_URL's form.
func (s MQTTService) URL() string {
	scheme := "mqtt"
	if s.SSL {
		scheme = "mqtts"
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(s.Host, strconv.Itoa(s.Port))}
	return u.String()
}

// ServiceError is a refusal from the Supervisor's services API. Its text
// tells the user what to change.
type ServiceError struct {
	StatusCode int
	Message    string // the Supervisor's own explanation, if it gave one
}

func (e *ServiceError) Error() string {
	why := e.Message
	if why == "" {
		why = http.StatusText(e.StatusCode)
	}
	switch e.StatusCode {
	case http.StatusBadRequest:
		return fmt.Sprintf("no MQTT broker is registered with the Supervisor (%s): install and start the Mosquitto broker add-on, or set the mqtt_url option", why)
	case http.StatusForbidden:
		return fmt.Sprintf("the Supervisor denied access to the MQTT service (%s): the add-on's config.yaml must declare services: [mqtt:need]", why)
	case http.StatusUnauthorized:
		return fmt.Sprintf("the Supervisor rejected the add-on's token (%s)", why)
	}
	return fmt.Sprintf("the Supervisor answered HTTP %d (%s)", e.StatusCode, why)
}

// maxReply bounds what is read from the Supervisor; a real reply is a few
// hundred bytes.
const maxReply = 1 << 20

// MQTT asks the Supervisor for the MQTT service (GET /services/mqtt).
func (s Supervisor) MQTT(ctx context.Context) (MQTTService, error) {
	if s.Token == "" {
		return MQTTService{}, errors.New("no Supervisor token (SUPERVISOR_TOKEN is empty): the Supervisor can only be asked from inside the add-on")
	}
	base := s.URL
	if base == "" {
		base = DefaultSupervisorURL
	}
	client := s.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/services/mqtt", nil)
	if err != nil {
		return MQTTService{}, fmt.Errorf("asking the Supervisor for the MQTT service: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Token)
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return MQTTService{}, fmt.Errorf("asking the Supervisor for the MQTT service: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return MQTTService{}, fmt.Errorf("reading the Supervisor's MQTT service reply: %w", err)
	}

	// Every reply, success or not, is wrapped in {"result", "message", "data"}.
	var reply struct {
		Result  string          `json:"result"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	}
	decodeErr := json.Unmarshal(body, &reply)
	if resp.StatusCode != http.StatusOK {
		return MQTTService{}, &ServiceError{StatusCode: resp.StatusCode, Message: reply.Message}
	}
	if decodeErr != nil {
		return MQTTService{}, fmt.Errorf("the Supervisor's MQTT service reply is not JSON: %w", decodeErr)
	}
	if reply.Result != "ok" {
		return MQTTService{}, fmt.Errorf("the Supervisor's MQTT service reply has result %q, not ok", reply.Result)
	}
	return parseMQTTService(reply.Data)
}

// parseMQTTService reads the reply's data. The Supervisor sends the port as
// a number; its docs show a string, so both are accepted. Errors must not
// quote the data: it holds the broker password.
func parseMQTTService(data json.RawMessage) (MQTTService, error) {
	var d struct {
		Host     string          `json:"host"`
		Port     json.RawMessage `json:"port"`
		SSL      bool            `json:"ssl"`
		Username string          `json:"username"`
		Password string          `json:"password"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return MQTTService{}, fmt.Errorf("the Supervisor's MQTT service data is malformed: %w", err)
	}
	if d.Host == "" {
		return MQTTService{}, errors.New("the Supervisor's MQTT service has no host")
	}
	port, ok := parsePort(d.Port)
	if !ok {
		return MQTTService{}, errors.New("the Supervisor's MQTT service has no port in 1–65535")
	}
	return MQTTService{Host: d.Host, Port: port, SSL: d.SSL, Username: d.Username, Password: config.Secret(d.Password)}, nil
}

// parsePort reads a port given as a JSON number or a JSON string.
func parsePort(raw json.RawMessage) (int, bool) {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n >= 1 && n <= 65535
}
