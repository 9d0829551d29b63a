package addon_test

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/em340-bridge/em340-bridge/addon"
	"github.com/em340-bridge/em340-bridge/internal/config"
)

const token = "test-supervisor-token"

// fakeSupervisor serves GET /services/mqtt as the Supervisor does: the
// bearer token is checked first, then the reply is status with body. It
// counts the requests that got past the token check.
type fakeSupervisor struct {
	status int
	body   string
	calls  atomic.Int32
}

func (f *fakeSupervisor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+token {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"result":"error","message":"Unauthorized"}`))
		return
	}
	if r.Method != http.MethodGet || r.URL.Path != "/services/mqtt" {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"result":"error","message":"not found"}`))
		return
	}
	f.calls.Add(1)
	w.WriteHeader(f.status)
	_, _ = w.Write([]byte(f.body))
}

// serve starts a fake Supervisor and returns a client for it.
func serve(t *testing.T, status int, body string) (*fakeSupervisor, addon.Supervisor) {
	t.Helper()
	f := &fakeSupervisor{status: status, body: body}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, addon.Supervisor{URL: srv.URL, Token: token, HTTPClient: srv.Client()}
}

// Replies as the Supervisor's services API sends them (api_return_ok
// around services/modules/mqtt.py's data); the docs show port as a string.
const (
	mosquittoReply = `{"result":"ok","data":{"addon":"core_mosquitto","host":"core-mosquitto","port":1883,"ssl":false,"protocol":"3.1.1","username":"addons","password":"Zx9-addons-pw"}}`
	tlsStringPort  = `{"result":"ok","data":{"host":"core-mosquitto","port":"8883","ssl":true,"protocol":"3.1.1","username":"addons","password":"Zx9-addons-pw"}}`
	notEnabled     = `{"result":"error","message":"Service not enabled"}`
	noAccess       = `{"result":"error","message":"No access to mqtt service!"}`
)

func fixture(name string) string { return filepath.Join("testdata", name) }

// mustLoad checks that the bridge accepts environ, as it will at start.
func mustLoad(t *testing.T, environ []string) config.Config {
	t.Helper()
	c, err := config.Load(environ)
	if err != nil {
		t.Fatalf("config.Load(%q): %v", environ, err)
	}
	return c
}

func TestEnvironFromSupervisor(t *testing.T) {
	for _, tc := range []struct {
		name, reply, wantURL string
	}{
		{"port as number, no TLS", mosquittoReply, "mqtt://core-mosquitto:1883"},
		{"port as string, TLS", tlsStringPort, "mqtts://core-mosquitto:8883"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fake, sup := serve(t, http.StatusOK, tc.reply)
			environ, err := environWithoutStatus(t, fixture("options-minimal.json"), sup)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{
				"EM340_SERIAL_DEVICE=/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KXYZ-if00-port0",
				"EM340_SERIAL_BAUD=9600",
				"EM340_SERIAL_PARITY=none",
				"EM340_SERIAL_STOP_BITS=1",
				"EM340_MODBUS_ADDRESS=1",
				"EM340_POLL_INTERVAL=5s",
				"EM340_MQTT_URL=" + tc.wantURL,
				"EM340_MQTT_USERNAME=addons",
				"EM340_MQTT_PASSWORD=Zx9-addons-pw",
				"EM340_MQTT_BASE_TOPIC=em340",
				"EM340_LOG_LEVEL=info",
			}
			if !slices.Equal(environ, want) {
				t.Errorf("Environ =\n%q\nwant\n%q", environ, want)
			}
			if n := fake.calls.Load(); n != 1 {
				t.Errorf("Supervisor asked %d times, want 1", n)
			}
			c := mustLoad(t, environ)
			if c.MQTTURL != tc.wantURL || c.MQTTUsername != "addons" || c.MQTTPassword.Reveal() != "Zx9-addons-pw" {
				t.Errorf("loaded broker %s user %q, want %s addons with the service's password", c.MQTTURL, c.MQTTUsername, tc.wantURL)
			}
		})
	}
}

func TestEnvironUserMQTTSkipsSupervisor(t *testing.T) {
	fake, sup := serve(t, http.StatusOK, mosquittoReply)
	environ, err := environWithoutStatus(t, fixture("options-user-mqtt.json"), sup)
	if err != nil {
		t.Fatal(err)
	}
	if n := fake.calls.Load(); n != 0 {
		t.Errorf("Supervisor asked %d times although mqtt_url is set", n)
	}
	want := []string{
		"EM340_SERIAL_DEVICE=usb:0403:6001:A10KXYZ",
		"EM340_SERIAL_BAUD=19200",
		"EM340_SERIAL_PARITY=even",
		"EM340_SERIAL_STOP_BITS=2",
		"EM340_MODBUS_ADDRESS=7",
		"EM340_MODBUS_TIMEOUT=800ms",
		"EM340_POLL_INTERVAL=10s",
		"EM340_MQTT_URL=mqtts://broker.example.net:8883",
		"EM340_MQTT_USERNAME=meter",
		"EM340_MQTT_PASSWORD=s3cret-pass",
		"EM340_MQTT_CLIENT_ID=em340-garage",
		"EM340_MQTT_BASE_TOPIC=house/em340",
		"EM340_MQTT_INSECURE=true",
		"EM340_HA_DISCOVERY_PREFIX=ha",
		"EM340_HA_STATUS_TOPIC=ha/status",
		"EM340_DEVICE_ID=garage_meter",
		"EM340_RECONNECT_MIN_DELAY=1s",
		"EM340_RECONNECT_MAX_DELAY=30s",
		"EM340_RECONNECT_FACTOR=2.5",
		"EM340_OFFLINE_AFTER=10m",
		"EM340_LOG_LEVEL=debug",
		"EM340_LOG_FORMAT=json",
		"EM340_STALL_TIMEOUT=3m",
	}
	if !slices.Equal(environ, want) {
		t.Errorf("Environ =\n%q\nwant\n%q", environ, want)
	}
	c := mustLoad(t, environ)
	if c.ReconnectFactor != 2.5 || c.MQTTPassword.Reveal() != "s3cret-pass" || !c.MQTTInsecure {
		t.Errorf("loaded %+v", c)
	}
}

// The user's own Mosquitto login: the address still comes from the
// Supervisor, the credentials only from the user.
func TestEnvironUserCredentialsWithServiceBroker(t *testing.T) {
	_, sup := serve(t, http.StatusOK, mosquittoReply)
	path := writeOptions(t, map[string]any{"mqtt_username": "me"})
	environ, err := environWithoutStatus(t, path, sup)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"EM340_MQTT_URL=mqtt://core-mosquitto:1883", "EM340_MQTT_USERNAME=me"}
	if !slices.Equal(environ, want) {
		t.Errorf("Environ = %q, want %q (no service password with the user's name)", environ, want)
	}
	mustLoad(t, environ)
}

func TestEnvironBadOption(t *testing.T) {
	fake, sup := serve(t, http.StatusOK, mosquittoReply)
	_, err := addon.Environ(t.Context(), fixture("options-bad.json"), sup)
	if err == nil || !strings.Contains(err.Error(), `"serial_port"`) {
		t.Fatalf("Environ error = %v, want one naming serial_port", err)
	}
	if n := fake.calls.Load(); n != 0 {
		t.Errorf("Supervisor asked %d times for options that are wrong anyway", n)
	}
}

func TestEnvironOptionValues(t *testing.T) {
	_, sup := serve(t, http.StatusOK, mosquittoReply)
	for _, tc := range []struct {
		name    string
		options string
		want    []string // EM340_* besides the Supervisor's three
		wantErr string
	}{
		{"numbers as written", `{"reconnect_factor": 1.50, "modbus_address": 247}`,
			[]string{"EM340_MODBUS_ADDRESS=247", "EM340_RECONNECT_FACTOR=1.50"}, ""},
		{"bool", `{"mqtt_insecure": false}`, []string{"EM340_MQTT_INSECURE=false"}, ""},
		{"null is unset", `{"device_id": null}`, nil, ""},
		{"empty string is unset", `{"device_id": ""}`, nil, ""},
		{"list", `{"serial_device": ["/dev/ttyUSB0"]}`, nil, `"serial_device": a list`},
		{"object", `{"serial": {"port": "/dev/ttyUSB0"}}`, nil, `"serial"`},
		{"nested object", `{"serial_device": {"port": "/dev/ttyUSB0"}}`, nil, `"serial_device": an object`},
		{"not an object", `["serial_device"]`, nil, "not a JSON object"},
		{"not JSON", `serial_device: /dev/ttyUSB0`, nil, "not a JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "options.json")
			if err := os.WriteFile(path, []byte(tc.options), 0o600); err != nil {
				t.Fatal(err)
			}
			environ, err := environWithoutStatus(t, path, sup)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := slices.DeleteFunc(environ, func(kv string) bool {
				return strings.HasPrefix(kv, "EM340_MQTT_URL=") || strings.HasPrefix(kv, "EM340_MQTT_USERNAME=") || strings.HasPrefix(kv, "EM340_MQTT_PASSWORD=")
			})
			if !slices.Equal(got, tc.want) {
				t.Errorf("Environ = %q, want %q", got, tc.want)
			}
		})
	}
}

// Every setting of the bridge can be set by its option name, and nothing
// else reaches the environment.
func TestEnvironMapsEveryOption(t *testing.T) {
	_, sup := serve(t, http.StatusOK, mosquittoReply)
	for _, v := range config.Variables() {
		option := config.AddonOption(v.Name)
		options := map[string]any{"mqtt_url": "mqtt://broker:1883"} // keeps the Supervisor out
		options[option] = "some value"
		path := writeOptions(t, options)
		environ, err := environWithoutStatus(t, path, sup)
		if err != nil {
			t.Fatalf("%s: %v", option, err)
		}
		if !slices.Contains(environ, v.Name+"=some value") {
			t.Errorf("option %s: Environ = %q, want %s set", option, environ, v.Name)
		}
		if len(environ) > 2 {
			t.Errorf("option %s: Environ = %q, want only it and EM340_MQTT_URL", option, environ)
		}
	}
}

func TestEnvironSupervisorErrors(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		body       string
		token      string
		wantStatus int // of the *addon.ServiceError; 0 = not one
		want       []string
	}{
		{"no broker", http.StatusBadRequest, notEnabled, token, 400, []string{"Service not enabled", "Mosquitto", "mqtt_url"}},
		{"no services role", http.StatusForbidden, noAccess, token, 403, []string{"No access to mqtt service!", "services: [mqtt:need]"}},
		{"wrong token", http.StatusOK, mosquittoReply, "wrong", 401, []string{"token"}},
		{"no token", http.StatusOK, mosquittoReply, "", 0, []string{"SUPERVISOR_TOKEN"}},
		{"error without JSON", http.StatusBadGateway, `<html>bad gateway</html>`, token, 502, []string{"502"}},
		{"result not ok", http.StatusOK, `{"result":"error","data":{}}`, token, 0, []string{`"error"`}},
		{"no host", http.StatusOK, `{"result":"ok","data":{"port":1883,"password":"Zx9-addons-pw"}}`, token, 0, []string{"no host"}},
		{"bad port", http.StatusOK, `{"result":"ok","data":{"host":"h","port":"http","password":"Zx9-addons-pw"}}`, token, 0, []string{"port"}},
		{"port out of range", http.StatusOK, `{"result":"ok","data":{"host":"h","port":70000,"password":"Zx9-addons-pw"}}`, token, 0, []string{"port"}},
		{"wrong type", http.StatusOK, `{"result":"ok","data":{"host":"h","port":1883,"ssl":"Zx9-addons-pw","password":"Zx9-addons-pw"}}`, token, 0, []string{"malformed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, sup := serve(t, tc.status, tc.body)
			sup.Token = tc.token
			_, err := addon.Environ(t.Context(), fixture("options-minimal.json"), sup)
			if err == nil {
				t.Fatal("Environ succeeded")
			}
			msg := err.Error()
			for _, w := range append(tc.want, "mqtt_url") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, "Zx9-addons-pw") || strings.Contains(msg, token) {
				t.Errorf("error %q shows a credential", msg)
			}
			var se *addon.ServiceError
			if got := errors.As(err, &se); got != (tc.wantStatus != 0) || got && se.StatusCode != tc.wantStatus {
				t.Errorf("ServiceError %+v (found: %v), want status %d", se, got, tc.wantStatus)
			}
		})
	}
}

func TestEnvironSupervisorUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	_, err := addon.Environ(t.Context(), fixture("options-minimal.json"), addon.Supervisor{URL: url, Token: token})
	var netErr interface{ Timeout() bool } // *url.Error and net.Error both have it
	if err == nil || !errors.As(err, &netErr) {
		t.Fatalf("Environ error = %v, want the wrapped network error", err)
	}
}

func TestEnvironCanceled(t *testing.T) {
	_, sup := serve(t, http.StatusOK, mosquittoReply)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := addon.Environ(ctx, fixture("options-minimal.json"), sup)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Environ error = %v, want context.Canceled", err)
	}
}

func TestEnvironMissingOptionsFile(t *testing.T) {
	_, err := addon.Environ(t.Context(), filepath.Join(t.TempDir(), "options.json"), addon.Supervisor{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Environ error = %v, want fs.ErrNotExist", err)
	}
}

func TestMQTTServiceHidesPassword(t *testing.T) {
	_, sup := serve(t, http.StatusOK, mosquittoReply)
	svc, err := sup.MQTT(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{svc.Password.String(), strings.Join([]string{svc.URL(), svc.Username}, " ")} {
		if strings.Contains(s, "Zx9-addons-pw") {
			t.Errorf("%q shows the password", s)
		}
	}
	if b, _ := json.Marshal(svc); strings.Contains(string(b), "Zx9-addons-pw") {
		t.Errorf("JSON %s shows the password", b)
	}
}

func writeOptions(t *testing.T, options map[string]any) string {
	t.Helper()
	b, err := json.Marshal(options)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "options.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// environWithoutStatus is addon.Environ minus the status file entry, which
// it must always add (TestEnvironStatusFile); the other tests compare the rest.
func environWithoutStatus(t *testing.T, path string, sup addon.Supervisor) ([]string, error) {
	t.Helper()
	environ, err := addon.Environ(t.Context(), path, sup)
	if err != nil {
		return nil, err
	}
	entry := "EM340_STATUS_FILE=" + addon.StatusFile
	if !slices.Contains(environ, entry) && !slices.ContainsFunc(environ, func(kv string) bool {
		return strings.HasPrefix(kv, "EM340_STATUS_FILE=")
	}) {
		t.Errorf("Environ = %q lacks %s", environ, entry)
	}
	return slices.DeleteFunc(environ, func(kv string) bool { return kv == entry }), nil
}

// The status file lives on the add-on's tmpfs /tmp, at the path the
// image's HEALTHCHECK reads (the Dockerfile's ENV), whatever the options.
func TestEnvironStatusFile(t *testing.T) {
	_, sup := serve(t, http.StatusOK, mosquittoReply)
	environ, err := addon.Environ(t.Context(), fixture("options-user-mqtt.json"), sup)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(environ, "EM340_STATUS_FILE="+addon.StatusFile) {
		t.Errorf("Environ = %q, want EM340_STATUS_FILE=%s", environ, addon.StatusFile)
	}
	if !strings.HasPrefix(addon.StatusFile, "/tmp/") {
		t.Errorf("StatusFile %s is not on the tmpfs /tmp", addon.StatusFile)
	}
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(df), "\nENV EM340_STATUS_FILE="+addon.StatusFile+"\n") {
		t.Errorf("the Dockerfile does not set ENV EM340_STATUS_FILE=%s for its HEALTHCHECK", addon.StatusFile)
	}
}

func TestOptionNames(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`EM340_MODBUS_ADDRESS="0": out of range; allowed: 1–247`, `modbus_address="0": out of range; allowed: 1–247`},
		{`EM340_MQTT_PASSWORD_FILE: set together with EM340_MQTT_PASSWORD`, `mqtt_password_file: set together with mqtt_password`},
		{`EM340_NO_SUCH stays`, `EM340_NO_SUCH stays`},
		{`no variable`, `no variable`},
	} {
		if got := addon.OptionNames(tc.in); got != tc.want {
			t.Errorf("OptionNames(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
