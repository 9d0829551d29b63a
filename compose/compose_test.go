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
	if m.HealthCheck == nil || !slices.Contains(m.HealthCheck.Test, "mosquitto_sub") ||
		!slices.Contains(m.HealthCheck.Test, "$SYS/broker/version") {
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
		{"no .env", "", []string{"EM340_MQTT_URL=mqtt://mosquitto:1883"}, "20"},
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
			if _, err := config.Load(env); err != nil {
				t.Errorf("the bridge rejects the compose environment: %v", err)
			}
			if !slices.Equal(s.GroupAdd, []string{tc.groupAdd}) {
				t.Errorf("group_add %q, want %s", s.GroupAdd, tc.groupAdd)
			}
		})
	}
}
