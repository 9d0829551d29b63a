package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/config"
	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/internal/testenv"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// loginWait bounds every expectation: generous, it only detects a hang.
const loginWait = 20 * time.Second

const loginHint = "the broker refused the login: check EM340_MQTT_USERNAME and EM340_MQTT_PASSWORD (or EM340_MQTT_PASSWORD_FILE)"

// The health check names why the broker has been down, when the bridge knows.
func TestCheckHealthSaysWhyTheBrokerIsDown(t *testing.T) {
	now := time.Now()
	path := filepath.Join(t.TempDir(), "status")
	st := HealthStatus{Updated: now, MQTTSince: now.Add(-10 * time.Minute), MQTTRefusal: loginHint, StallTimeout: time.Minute}
	if err := writeStatus(path, st); err != nil {
		t.Fatal(err)
	}
	_, err := CheckHealth(path, time.Minute, now)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), loginHint) {
		t.Errorf("CheckHealth: %v, want the broker unreachable and why", err)
	}
}

func TestConnectHint(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"bad user name or password", &autopaho.ConnackError{ReasonCode: 0x86}, loginHint},
		{"not authorized", &autopaho.ConnackError{ReasonCode: 0x87}, loginHint},
		{"wrapped", fmt.Errorf("connect: %w", &autopaho.ConnackError{ReasonCode: 0x87}), loginHint},
		{"client id", &autopaho.ConnackError{ReasonCode: 0x85}, "the broker refused the client id: check EM340_MQTT_CLIENT_ID"},
		{"server busy", &autopaho.ConnackError{ReasonCode: 0x89}, "the broker refused the connection"},
		{"nothing listening", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, "is the broker running and EM340_MQTT_URL right?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := connectHint(tc.err); got != tc.want {
				t.Errorf("connectHint(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

// TestRefusedLoginIsExplainedOnce runs the bridge with a wrong password
// against a Mosquitto that checks a password file. The user reads one
// warning with the login hint however often the bridge retries, and the
// warning comes again only when the error changes. Meanwhile the meter is
// still read (the link is online, the status file says the broker is not
// connected) and nothing reaches HA; once the broker accepts the password,
// HA records both devices with fresh values at the next retry, with no
// restart.
func TestRefusedLoginIsExplainedOnce(t *testing.T) {
	broker := startLoginBroker(t, map[string]string{"homeassistant": "ha-secret", "em340": "right"})
	ha := broker.subscribe(t, "homeassistant", "ha-secret")

	dir := t.TempDir()
	sim := emsim.New(emsim.Options{Serial: "235411W", FineEnergy: true, ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB, FirmwareVersion: 1})
	if err := sim.Start(filepath.Join(dir, "ttyUSB0")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	statusFile := filepath.Join(dir, "status")
	cfg, err := config.Load([]string{
		"EM340_SERIAL_DEVICE=" + filepath.Join(dir, "ttyUSB0"),
		"EM340_SERIAL_BAUD=115200",
		"EM340_MODBUS_TIMEOUT=600ms",
		"EM340_POLL_INTERVAL=500ms",
		"EM340_MQTT_URL=" + broker.URL(),
		"EM340_MQTT_USERNAME=em340",
		"EM340_MQTT_PASSWORD=wrong",
		"EM340_STATUS_FILE=" + statusFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	topics, err := discovery.NewTopics(cfg.MQTTBaseTopic, cfg.HADiscoveryPrefix, "235411W")
	if err != nil {
		t.Fatal(err)
	}

	logs := &logRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: cfg, Version: "test", Logger: slog.New(logs),
			BirthDelay: func() time.Duration { return 50 * time.Millisecond }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(loginWait):
			t.Error("bridge did not stop")
		}
	})

	// Refused: four attempts (0.5 + 1 + 2 s of backoff), one warning.
	waitFor(t, "four refused logins", func() bool { return broker.refusals() >= 4 })
	failures := logs.connectFailures()
	if len(failures) != 1 {
		t.Fatalf("%d connection warnings after %d refused logins, want 1: %v", len(failures), broker.refusals(), failures)
	}
	if failures[0].hint != loginHint || !strings.Contains(failures[0].err, "reason: 135") {
		t.Errorf("warning err %q hint %q, want reason 135 (not authorized) with %q", failures[0].err, failures[0].hint, loginHint)
	}
	// Meanwhile the meter is read, and the status file (what the health check
	// judges) says so, with the broker down.
	waitFor(t, "the link online in the status file", func() bool {
		st, err := readStatus(statusFile)
		return err == nil && st.Link == "online" && !st.MQTTConnected && st.LastPoll.After(st.MQTTSince)
	})
	// The health check can say why the broker is down: the same hint.
	if st, _ := readStatus(statusFile); st.MQTTRefusal != loginHint {
		t.Errorf("status file: refusal %q, want %q", st.MQTTRefusal, loginHint)
	}
	if n := len(ha.Messages(0)); n != 0 {
		t.Fatalf("HA received %d messages while the bridge's login was refused", n)
	}

	// The broker now takes the bridge's password: the next retry logs in.
	broker.setPassword(t, "em340", "wrong")
	ha.Wait(0, topics.MeterState(), func(p string) bool { return strings.Contains(p, `"energy_import":`) }, loginWait)
	ha.Wait(0, topics.MeterAvailability(), brokertest.Equals("online"), loginWait) // just after the state
	h := recordedBy(t, ha, cfg.HADiscoveryPrefix)
	now := time.Now()

	// The link's retained state is published before the bridge's config, so
	// HA reads it when it subscribes after discovery.
	if got, _ := ha.Last(topics.Link()); !strings.Contains(got.Payload, `"state":"online"`) {
		t.Errorf("the link topic says %s, want online", got.Payload)
	}
	for _, reg := range meter.Registers() {
		switch got := h.State(topics.MeterID()+"_"+reg.Key, now); got {
		case "", hass.Unknown, hass.Unavailable:
			t.Errorf("HA shows %s as %q after the login was accepted", reg.Key, got)
		}
	}
	if n := len(logs.connectFailures()); n != 1 {
		t.Errorf("%d connection warnings once connected, want still 1", n)
	}

	// Refused again after a broker restart: the error changed (the broker
	// went away, then refused), so it is told again, once.
	broker.setPassword(t, "em340", "rotated")
	refused := broker.refusals()
	broker.restart(t)
	waitFor(t, "three more refused logins", func() bool { return broker.refusals() >= refused+3 })
	failures = logs.connectFailures()
	var login int
	for i, f := range failures {
		if strings.Contains(f.err, "reason: 135") {
			login++
			if f.hint != loginHint {
				t.Errorf("refused login logged with hint %q", f.hint)
			}
		}
		if i > 0 && f.err == failures[i-1].err {
			t.Errorf("the same error logged twice in a row: %q", f.err)
		}
	}
	if login != 2 {
		t.Errorf("%d warnings for a refused login over two refusals, want 2: %v", login, failures)
	}
}

// waitFor polls cond until it holds, failing after the hang bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(loginWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s", what, loginWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readStatus(path string) (HealthStatus, error) {
	// CheckHealth with no limit to speak of returns the status it read.
	return CheckHealth(path, time.Hour, time.Now())
}

// logRecorder is a slog.Handler that keeps every record, as the user's log
// would show them.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

type connectFailure struct{ err, hint string }

// connectFailures are the warnings about a failed broker connection, in order.
func (l *logRecorder) connectFailures() []connectFailure {
	l.mu.Lock()
	defer l.mu.Unlock()
	var fs []connectFailure
	for _, r := range l.records {
		if r.Level != slog.LevelWarn || !strings.HasPrefix(r.Message, "MQTT connection failed") {
			continue
		}
		var f connectFailure
		r.Attrs(func(a slog.Attr) bool {
			switch a.Key {
			case "err":
				f.err = a.Value.String()
			case "hint":
				f.hint = a.Value.String()
			}
			return true
		})
		fs = append(fs, f)
	}
	return fs
}

// loginBroker is a Mosquitto that refuses anonymous clients and checks a
// password file, which it rereads on SIGHUP; its log counts the refusals.
// (internal/brokertest's broker admits anonymous clients.)
type loginBroker struct {
	bin, dir string
	port     int
	cmd      *exec.Cmd
	done     chan struct{}
	users    map[string]string
}

func startLoginBroker(t *testing.T, users map[string]string) *loginBroker {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin = "/usr/sbin/mosquitto"
	}
	if _, err := os.Stat(bin); err != nil {
		testenv.Missing(t, "mosquitto", "apt-get install -y mosquitto")
	}
	if _, err := exec.LookPath("mosquitto_passwd"); err != nil {
		testenv.Missing(t, "mosquitto_passwd", "apt-get install -y mosquitto")
	}
	// Started as root, mosquitto drops to its own user: its files must be
	// readable, and t.TempDir's parent is not.
	dir, err := os.MkdirTemp("", "em340-login-broker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &loginBroker{bin: bin, dir: dir, users: users}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	b.writePasswords(t)
	conf := fmt.Sprintf("per_listener_settings false\nallow_anonymous false\npassword_file %s\npersistence false\n"+
		"log_dest file %s\nlog_type all\nlistener %d 127.0.0.1\n", b.path("passwords"), b.path("log"), b.port)
	if err := os.WriteFile(b.path("mosquitto.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b.path("log"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(b.path("log"), 0o666); err != nil {
		t.Fatal(err)
	}
	b.start(t)
	t.Cleanup(b.stop)
	return b
}

func (b *loginBroker) path(name string) string { return filepath.Join(b.dir, name) }

func (b *loginBroker) URL() string { return "mqtt://127.0.0.1:" + strconv.Itoa(b.port) }

func (b *loginBroker) writePasswords(t *testing.T) {
	t.Helper()
	file := b.path("passwords")
	_ = os.Remove(file)
	for user, pw := range b.users {
		args := []string{"-b", file, user, pw}
		if _, err := os.Stat(file); err != nil {
			args = append([]string{"-c"}, args...)
		}
		if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
}

// setPassword changes a user's password, as the broker's admin would.
func (b *loginBroker) setPassword(t *testing.T, user, pw string) {
	t.Helper()
	b.users[user] = pw
	b.writePasswords(t)
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
}

func (b *loginBroker) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(b.bin, "-c", b.path("mosquitto.conf"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b.cmd, b.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(b.done)
	waitFor(t, "mosquitto listening", func() bool {
		select {
		case <-b.done:
			log, _ := os.ReadFile(b.path("log"))
			t.Fatalf("mosquitto exited at start:\n%s", log)
		default:
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(b.port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

func (b *loginBroker) stop() {
	if b.cmd == nil {
		return
	}
	_ = b.cmd.Process.Kill()
	<-b.done
	b.cmd = nil
}

// restart kills the broker, as a crash would, and starts it on the same port.
func (b *loginBroker) restart(t *testing.T) {
	t.Helper()
	b.stop()
	b.start(t)
}

// refusals counts the CONNACKs that said "not authorized" (135).
func (b *loginBroker) refusals() int {
	log, _ := os.ReadFile(b.path("log"))
	return strings.Count(string(log), " (0, 135)\n")
}

// subscribe is HA on a broker that wants a login: every message on #.
func (b *loginBroker) subscribe(t *testing.T, user, pw string) *brokertest.Subscriber {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := hass.Dial(ctx, "127.0.0.1:"+strconv.Itoa(b.port), "test-ha", "#", hass.Login{User: user, Password: pw})
	if err != nil {
		t.Fatalf("HA's login: %v", err)
	}
	t.Cleanup(s.Close)
	return brokertest.For(t, s)
}

// recordedBy is what HA made of the messages s saw, failing on anything it would warn about.
func recordedBy(t *testing.T, s *brokertest.Subscriber, prefix string) *hass.HA {
	t.Helper()
	h := hass.New(prefix)
	for _, m := range s.Messages(0) {
		if _, err := h.Apply(m); err != nil {
			t.Errorf("HA would warn: %v", err)
		}
	}
	return h
}
