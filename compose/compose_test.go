package compose_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/em340-bridge/em340-bridge/internal/config"
)

const bridge = "em340-bridge"

// load loads docker-compose.yml as `docker compose` would, offline, from a
// copy in a temporary folder so that a developer's own compose/.env does
// not leak in; dotEnv, if not empty, becomes that folder's .env.
func load(t *testing.T, dotEnv string) *types.Project {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "docker-compose.yml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if dotEnv != "" {
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(dotEnv), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "docker-compose.yml")},
		cli.WithWorkingDirectory(dir),
		cli.WithName("em340"),
		cli.WithEnv([]string{}), // not the test process's environment
		cli.WithEnvFiles(),      // dir/.env, as docker compose reads it
		cli.WithDotEnv,
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(t.Context())
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// environ is the bridge container's environment, as KEY=value strings.
func environ(s types.ServiceConfig) []string {
	var env []string
	for k, v := range s.Environment {
		if v != nil {
			env = append(env, k+"="+*v)
		}
	}
	slices.Sort(env)
	return env
}

func TestNothingPrivileged(t *testing.T) {
	p := load(t, "")
	if names := p.ServiceNames(); !slices.Contains(names, "mosquitto") || !slices.Contains(names, bridge) {
		t.Fatalf("services %v, want mosquitto and %s", names, bridge)
	}
	for _, s := range p.Services {
		if s.Privileged {
			t.Errorf("%s is privileged", s.Name)
		}
		if len(s.CapAdd) > 0 {
			t.Errorf("%s has cap_add %v", s.Name, s.CapAdd)
		}
		if len(s.Devices) > 0 {
			t.Errorf("%s has devices %v: resolved once at create, so not hot-plug safe", s.Name, s.Devices)
		}
	}
}

func TestBridgeSerialAccess(t *testing.T) {
	s := service(t, load(t, ""), bridge)

	// docker/cli's check (cli/command/container/opts.go); compose-go itself
	// accepts any string.
	rule := regexp.MustCompile(`^[acb] ([0-9]+|\*):([0-9]+|\*) [rwm]{1,3}$`)
	for _, r := range s.DeviceCgroupRules {
		if !rule.MatchString(r) {
			t.Errorf("device cgroup rule %q would be rejected by docker", r)
		}
	}
	for _, want := range []string{"c 188:* rmw", "c 166:* rmw"} {
		if !slices.Contains(s.DeviceCgroupRules, want) {
			t.Errorf("device_cgroup_rules %q lack %q", s.DeviceCgroupRules, want)
		}
	}

	var dev *types.ServiceVolumeConfig
	for i, v := range s.Volumes {
		if v.Target == "/dev" {
			dev = &s.Volumes[i]
		}
	}
	switch {
	case dev == nil:
		t.Error("the host /dev is not mounted: a re-plugged adapter would not appear")
	case dev.Type != types.VolumeTypeBind || dev.Source != "/dev":
		t.Errorf("/dev is %s from %q, want a bind of the host's /dev", dev.Type, dev.Source)
	case !dev.ReadOnly:
		t.Error("/dev is mounted read-write")
	case dev.Bind == nil || dev.Bind.Recursive != "disabled":
		t.Error("/dev is mounted recursively, bringing the host's /dev/shm, /dev/pts and /dev/mqueue along")
	}

	uid, _, _ := strings.Cut(s.User, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("user %q is not a numeric non-root user", s.User)
	}
	if !slices.Equal(s.GroupAdd, []string{"20"}) {
		t.Errorf("group_add %q, want the dialout GID 20 by default", s.GroupAdd)
	}
}

func TestStartOrderAndRestart(t *testing.T) {
	p := load(t, "")
	m := service(t, p, "mosquitto")
	if probe := strings.Join(m.HealthCheck.Test, " "); m.HealthCheck == nil || !strings.Contains(probe, "mosquitto_sub ") ||
		!strings.Contains(probe, "'$SYS/broker/version'") {
		t.Errorf("mosquitto healthcheck %+v, want a mosquitto_sub probe of $SYS/broker/version", m.HealthCheck)
	}
	b := service(t, p, bridge)
	if d, ok := b.DependsOn["mosquitto"]; !ok || d.Condition != types.ServiceConditionHealthy {
		t.Errorf("depends_on %+v, want mosquitto with condition service_healthy", b.DependsOn)
	}
	if b.Restart != types.RestartPolicyUnlessStopped {
		t.Errorf("restart %q, want unless-stopped", b.Restart)
	}
}

// What compose hands the bridge, without and with a .env, passes the
// bridge's own checks.
func TestBridgeEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name, dotEnv string
		want         []string // among the environment
		groupAdd     string
	}{
		{"no .env", "", []string{
			"EM340_MQTT_URL=mqtt://mosquitto:1883",
			"EM340_MQTT_USERNAME=em340-bridge",
			"EM340_MQTT_PASSWORD_FILE=" + bridgePasswordFile,
		}, "20"},
		{"another broker with a password", "EM340_MQTT_URL=mqtt://broker.lan:1883\nEM340_MQTT_USERNAME=me\n" +
			"EM340_MQTT_PASSWORD=secret\nEM340_MQTT_PASSWORD_FILE=\n",
			[]string{"EM340_MQTT_URL=mqtt://broker.lan:1883", "EM340_MQTT_USERNAME=me", "EM340_MQTT_PASSWORD=secret"}, "20"},
		{".env", "EM340_SERIAL_DEVICE=/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KXYZ-if00-port0\n" +
			"EM340_MQTT_URL=mqtt://broker.lan:1883\nEM340_POLL_INTERVAL=10s\nDIALOUT_GID=18\n",
			[]string{
				"EM340_SERIAL_DEVICE=/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A10KXYZ-if00-port0",
				"EM340_MQTT_URL=mqtt://broker.lan:1883",
				"EM340_POLL_INTERVAL=10s",
			}, "18"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := service(t, load(t, tc.dotEnv), bridge)
			env := environ(s)
			for _, w := range tc.want {
				if !slices.Contains(env, w) {
					t.Errorf("environment %q lacks %s", env, w)
				}
			}
			if unknown := config.UnknownVariables(env); len(unknown) > 0 {
				t.Errorf("compose sets %v, which the bridge does not read", unknown)
			}
			if _, err := config.Load(inContainer(t, env)); err != nil {
				t.Errorf("the bridge rejects the compose environment: %v", err)
			}
			if !slices.Equal(s.GroupAdd, []string{tc.groupAdd}) {
				t.Errorf("group_add %q, want %s", s.GroupAdd, tc.groupAdd)
			}
		})
	}
}

// bridgePasswordFile is where the bridge container finds the password
// mosquitto-init made (./secrets/em340-bridge on the host).
const bridgePasswordFile = "/run/secrets/mqtt/em340-bridge.password"

// composeVariables are the .env variables that docker-compose.yml reads
// itself; they are not the bridge's.
func composeVariables() []string {
	return []string{"DIALOUT_GID", "MQTT_BIND", "MQTT_PORT", "BRIDGE_IMAGE", "MOSQUITTO_IMAGE"}
}

// inContainer is env with the container's password file replaced by a real
// file here, so that config.Load can read it as the bridge would.
func inContainer(t *testing.T, env []string) []string {
	t.Helper()
	out := slices.Clone(env)
	for i, kv := range out {
		if kv == "EM340_MQTT_PASSWORD_FILE="+bridgePasswordFile {
			path := filepath.Join(t.TempDir(), "em340-bridge.password")
			if err := os.WriteFile(path, []byte("0123456789abcdef\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			out[i] = "EM340_MQTT_PASSWORD_FILE=" + path
		}
	}
	return out
}

// The broker needs a login and is reachable from this host only, unless
// .env says otherwise; the bridge sees its own password and no other.
func TestBrokerSecureByDefault(t *testing.T) {
	for _, tc := range []struct {
		name, dotEnv, hostIP, hostPort string
	}{
		{"default", "", "127.0.0.1", "1883"},
		{"MQTT_BIND", "MQTT_BIND=0.0.0.0\nMQTT_PORT=1884\n", "0.0.0.0", "1884"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := load(t, tc.dotEnv)
			m := service(t, p, "mosquitto")
			if len(m.Ports) != 1 || m.Ports[0].HostIP != tc.hostIP || m.Ports[0].Published != tc.hostPort || m.Ports[0].Target != 1883 {
				t.Errorf("mosquitto ports %+v, want %s:%s:1883", m.Ports, tc.hostIP, tc.hostPort)
			}
		})
	}

	conf := readText(t, "mosquitto/mosquitto.conf")
	for _, want := range []string{"\nallow_anonymous false\n", "\npassword_file /mosquitto/auth/passwd\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("mosquitto.conf lacks %q", strings.TrimSpace(want))
		}
	}
	p := load(t, "")
	m := service(t, p, "mosquitto")
	if d, ok := m.DependsOn["mosquitto-init"]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("mosquitto depends_on %+v, want mosquitto-init completed successfully", m.DependsOn)
	}
	if probe := strings.Join(m.HealthCheck.Test, " "); !strings.Contains(probe, "-u healthcheck -P") {
		t.Errorf("the health check %q does not log in", probe)
	}
	init := service(t, p, "mosquitto-init")
	if init.Image != m.Image || init.NetworkMode != "none" {
		t.Errorf("mosquitto-init runs %s on network %q, want the broker's image %s and no network", init.Image, init.NetworkMode, m.Image)
	}
	b := service(t, p, bridge)
	for _, v := range b.Volumes {
		if strings.Contains(v.Source, "secrets") && (v.Target != filepath.Dir(bridgePasswordFile) || !v.ReadOnly ||
			filepath.Base(v.Source) != "em340-bridge") {
			t.Errorf("the bridge mounts %s at %s (read-only %v), want only secrets/em340-bridge at %s", v.Source, v.Target, v.ReadOnly, filepath.Dir(bridgePasswordFile))
		}
	}
	if !strings.Contains(readText(t, "mosquitto/init.sh"), filepath.Base(bridgePasswordFile)) {
		t.Errorf("mosquitto/init.sh does not write %s", filepath.Base(bridgePasswordFile))
	}
}
