package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/testenv"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
	"github.com/simonvetter/modbus"
	"golang.org/x/sys/unix"
)

// bridgeBinary is built once per test run: tests that need the will must kill
// a real process, not `go run` (that would kill the go tool).
var bridgeBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "em340-bridge-test-")
	if err != nil {
		panic(err)
	}
	bridgeBinary = filepath.Join(dir, "em340-bridge")
	build := exec.Command("go", "build", "-o", bridgeBinary, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		panic("build em340-bridge: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestBadConfigurationNamesTheVariable(t *testing.T) {
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "missing-secret")
	tests := []struct {
		env      string
		variable string
	}{
		{"EM340_MODBUS_ADDRESS=999", "EM340_MODBUS_ADDRESS"},
		{"EM340_SERIAL_BAUD=1234", "EM340_SERIAL_BAUD"},
		{"EM340_MQTT_URL=http://broker:1883", "EM340_MQTT_URL"},
		{"EM340_MQTT_URL=mqtt://", "EM340_MQTT_URL"},
		{"EM340_MQTT_PASSWORD_FILE=" + unreadable, "EM340_MQTT_PASSWORD_FILE"},
		{"EM340_SERIAL_PARITY=mark", "EM340_SERIAL_PARITY"},
		{"EM340_POLL_INTERVAL=soon", "EM340_POLL_INTERVAL"},
	}
	for _, tt := range tests {
		t.Run(tt.variable, func(t *testing.T) {
			cmd := exec.Command(bridgeBinary)
			cmd.Env = []string{tt.env, "EM340_MQTT_PASSWORD=hunter2-secret"}
			if strings.Contains(tt.env, "PASSWORD_FILE") {
				cmd.Env = []string{tt.env}
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			err := cmd.Run()
			if err == nil {
				t.Fatal("exit 0 with a bad configuration")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s to reject the configuration", d)
			}
			if !strings.Contains(stderr.String(), tt.variable) {
				t.Errorf("stderr does not name %s:\n%s", tt.variable, stderr.String())
			}
			if strings.Contains(stderr.String(), "hunter2") {
				t.Errorf("the password leaked:\n%s", stderr.String())
			}
		})
	}
}

// bridgeProcess runs the built binary against a simulator and a broker.
type bridgeProcess struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	topics discovery.Topics
	ha     *brokertest.Subscriber
	broker *brokertest.Broker
	status string
	sim    *emsim.Sim
}

func startBridge(t *testing.T, env ...string) *bridgeProcess {
	t.Helper()
	broker := brokertest.Start(t)
	ha := brokertest.Subscribe(t, broker, "#")
	dir := t.TempDir()
	device := filepath.Join(dir, "ttyUSB0")
	sim := emsim.New(emsim.Options{Serial: "235411W", FineEnergy: true, ProductionYear: 2021, MeasurementMode: 1})
	if err := sim.Start(device); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	p := &bridgeProcess{stderr: &bytes.Buffer{}, ha: ha, broker: broker, status: filepath.Join(dir, "status"), sim: sim}
	p.cmd = exec.Command(bridgeBinary)
	p.cmd.Env = []string{"EM340_SERIAL_DEVICE=" + device, "EM340_SERIAL_BAUD=115200", "EM340_POLL_INTERVAL=500ms",
		"EM340_MQTT_URL=" + broker.URL(), "EM340_STATUS_FILE=" + p.status, "EM340_LOG_LEVEL=debug"}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("bridge log:\n%s", p.stderr.String())
		}
	})
	p.topics, _ = discovery.NewTopics("em340", "homeassistant", "235411W")
	ha.Wait(0, p.topics.MeterAvailability(), brokertest.Equals("online"), 20*time.Second)
	return p
}

func TestSIGKILLLeavesTheWill(t *testing.T) {
	p := startBridge(t)
	mark := p.ha.Mark()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Wait()
	m := p.ha.Wait(mark, p.topics.BridgeAvailability(), brokertest.Equals("offline"), 20*time.Second)
	if !m.Retain {
		t.Error("the will is not retained")
	}
	// A subscriber that comes later (HA restarting) also sees everything unavailable.
	late := brokertest.Subscribe(t, p.broker, "em340/bridge/availability")
	late.Wait(0, p.topics.BridgeAvailability(), brokertest.Equals("offline"), 20*time.Second)
}

func TestSIGTERMExitsCleanlyWithinTwoSeconds(t *testing.T) {
	p := startBridge(t)
	mark := p.ha.Mark()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err := p.cmd.Wait()
	took := time.Since(start)
	if err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if took > 2*time.Second {
		t.Errorf("took %s to stop", took)
	}
	p.ha.Wait(mark, p.topics.BridgeAvailability(), brokertest.Equals("offline"), 20*time.Second)
}

// TestSIGTERMDuringARequestExitsWithinTwoSeconds: a request in flight ends at
// once on shutdown, whatever EM340_MODBUS_TIMEOUT is (here 4 s).
func TestSIGTERMDuringARequestExitsWithinTwoSeconds(t *testing.T) {
	p := startBridge(t, "EM340_MODBUS_TIMEOUT=4s")
	p.sim.Mute(true)
	p.sim.ResetRequests()
	deadline := time.Now().Add(20 * time.Second)
	for len(p.sim.Requests()) == 0 { // a request is now waiting for its answer
		if time.Now().After(deadline) {
			t.Fatal("no request reached the muted meter")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s to stop with a request in flight", took)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	p := startBridge(t)
	health := func(statusFile string) (int, string) {
		cmd := exec.Command(bridgeBinary, "healthcheck")
		cmd.Env = []string{"EM340_STATUS_FILE=" + statusFile}
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out := health(p.status)
		if code == 0 && strings.Contains(out, "healthy") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck %d: %s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code, out := health(filepath.Join(t.TempDir(), "none")); code != 1 || !strings.Contains(out, "unhealthy") {
		t.Fatalf("healthcheck without a bridge: %d %s", code, out)
	}
}

func TestAddonCommandRejectsBadOptions(t *testing.T) {
	options := filepath.Join(t.TempDir(), "options.json")
	if err := os.WriteFile(options, []byte(`{"serial_device":"/dev/ttyUSB0","no_such_option":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := run([]string{"addon", "-options", options}, nil, &bytes.Buffer{}, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "no_such_option") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

// A value the bridge rejects is reported by the option the user set, with
// the other options it refers to named as options too.
func TestAddonCommandNamesOptions(t *testing.T) {
	options := filepath.Join(t.TempDir(), "options.json")
	if err := os.WriteFile(options, []byte(`{"serial_device":"/dev/ttyUSB0","mqtt_url":"mqtt://broker:1883",
		"modbus_address":"0","reconnect_min_delay":"10s","reconnect_max_delay":"5s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := run([]string{"addon", "-options", options}, nil, &bytes.Buffer{}, &stderr)
	out := stderr.String()
	if code != 2 {
		t.Fatalf("exit %d, want 2: %s", code, out)
	}
	for _, want := range []string{`modbus_address="0"`, `reconnect_max_delay="5s"`, ">= reconnect_min_delay"} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "EM340_") {
		t.Errorf("stderr names variables the add-on's user never set:\n%s", out)
	}
}

func TestWithVariablesReplacesEveryEM340Entry(t *testing.T) {
	got := withVariables([]string{"PATH=/bin", "EM340_SERIAL_BAUD=19200", "TZ=UTC"}, []string{"EM340_SERIAL_BAUD=9600"})
	want := []string{"PATH=/bin", "TZ=UTC", "EM340_SERIAL_BAUD=9600"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
}

func TestUnknownCommand(t *testing.T) {
	var stderr bytes.Buffer
	if code := run([]string{"frobnicate"}, nil, &bytes.Buffer{}, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage") {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}

func TestSimulateCommandServesAMeter(t *testing.T) {
	device := filepath.Join(t.TempDir(), "ttyUSB0")
	cmd := startSimulate(t, "EM340_SERIAL_DEVICE="+device, "-device", device)
	client, err := modbus.NewClient(&modbus.ClientConfiguration{URL: "rtu://" + device, Speed: 115200, StopBits: 1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Open(); err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	model, err := client.ReadRegister(meter.AddrModelCode, modbus.HOLDING_REGISTER)
	if err != nil || model != meter.ModelEM340 {
		t.Fatalf("model code %d, %v", model, err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("simulate after Ctrl-C: %v", err)
	}
	if _, err := os.Lstat(device); !os.IsNotExist(err) {
		t.Errorf("device path left behind: %v", err)
	}
}

// startSimulate runs "em340-bridge simulate args…" until the test ends and
// waits for it to print a line containing want (the variables to set).
func startSimulate(t *testing.T, want string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bridgeBinary, append([]string{"simulate"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(out)
	for printed := false; !printed; {
		if !lines.Scan() {
			t.Fatal("simulate ended without printing the device path")
		}
		printed = strings.Contains(lines.Text(), want)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return cmd
}

// The add-on image's entrypoint reads the options as root (the Supervisor
// writes them root-only), then runs the bridge as -user in the group that
// owns the host's serial nodes, holding no capability. Without a serial node
// to learn that group from, it keeps root and says why.
func TestAddonCommandDropsRoot(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Missing(t, "root", "the add-on starts as root: run the tests as root, as CI does")
	}
	broker := brokertest.Start(t)
	for _, tc := range []struct {
		name     string
		node     bool // a ttyS0 of group 4242 under -dev
		want     string
		uid      string
		groups   string
		capsHeld bool
	}{
		{"serial group known", true, "running the bridge unprivileged", "65532", "4242", false},
		{"serial group unknown", false, "keeping root", "0", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A place the bridge can write to once unprivileged.
			shared, err := os.MkdirTemp("", "em340-addon-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.RemoveAll(shared) })
			if err := os.Chmod(shared, 0o777); err != nil {
				t.Fatal(err)
			}
			dev := t.TempDir()
			if tc.node {
				if err := unix.Mknod(filepath.Join(dev, "ttyS0"), unix.S_IFCHR|0o660, int(unix.Mkdev(4, 64))); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(filepath.Join(dev, "ttyS0"), 0, 4242); err != nil {
					t.Fatal(err)
				}
			}
			options := filepath.Join(t.TempDir(), "options.json")
			status := filepath.Join(shared, "status")
			if err := os.WriteFile(options, []byte(`{"serial_device": "/dev/em340-no-such-adapter", "mqtt_url": "`+broker.URL()+
				`", "mqtt_base_topic": "addon-user", "status_file": "`+status+`"}`), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bridgeBinary, "addon", "-options", options, "-user", "65532:65532", "-dev", dev)
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
			deadline := time.Now().Add(20 * time.Second)
			for {
				if _, err := os.Stat(status); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no status file from the bridge; stderr:\n%s", stderr.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr.String())
			}
			proc, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "status"))
			if err != nil {
				t.Fatal(err)
			}
			field := func(name string) []string {
				for line := range strings.Lines(string(proc)) {
					if v, ok := strings.CutPrefix(line, name+":"); ok {
						return strings.Fields(v)
					}
				}
				t.Fatalf("no %s in /proc/<pid>/status", name)
				return nil
			}
			for _, id := range append(field("Uid"), field("Gid")...) {
				if id != tc.uid {
					t.Errorf("Uid %v Gid %v, want all %s", field("Uid"), field("Gid"), tc.uid)
					break
				}
			}
			if got := strings.Join(field("Groups"), " "); tc.uid != "0" && got != tc.groups {
				t.Errorf("supplementary groups %q, want %q", got, tc.groups)
			}
			if held := field("CapEff")[0] != "0000000000000000"; held != tc.capsHeld {
				t.Errorf("effective capabilities %s, want held: %v", field("CapEff")[0], tc.capsHeld)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("exit after SIGTERM: %v; stderr:\n%s", err, stderr.String())
			}
		})
	}
}

// syncBuffer is a bytes.Buffer a child process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
