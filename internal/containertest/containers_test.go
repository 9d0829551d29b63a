package containertest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/discovery"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/testenv"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
	"golang.org/x/sys/unix"
)

// The image runs as non-root, and its HEALTHCHECK goes healthy with a
// broker and unhealthy when the broker goes away.
func TestImageHealth(t *testing.T) {
	e := newEngine(t)
	image := e.bridgeImage(t, "0.0.0-containertest")

	var cfg struct{ Config struct{ User string } }
	e.inspect(t, "image", image, &cfg)
	if uid, _, _ := strings.Cut(cfg.Config.User, ":"); uid == "" || uid == "0" || uid == "root" {
		t.Errorf("image user %q is root", cfg.Config.User)
	}
	if got := e.run(t, "run", "--rm", "--network", "none", image, "version"); got != "0.0.0-containertest" {
		t.Errorf("version prints %q, want the stamped 0.0.0-containertest", got)
	}

	broker := brokertest.Start(t)
	id := e.start(t, "health", "--network", "host",
		"--health-interval", "1s", "--health-timeout", "5s", "--health-retries", "2", "--health-start-period", "1s",
		"-e", "EM340_MQTT_URL="+broker.URL(),
		"-e", "EM340_SERIAL_DEVICE=/dev/em340ct-no-such-adapter",
		"-e", "EM340_MQTT_BASE_TOPIC="+name("health"),
		"-e", "EM340_RECONNECT_MIN_DELAY=500ms", "-e", "EM340_RECONNECT_MAX_DELAY=1s", "-e", "EM340_POLL_INTERVAL=1s",
		"-e", "EM340_MODBUS_TIMEOUT=1s", "-e", "EM340_STALL_TIMEOUT=3s",
		image)
	e.waitHealth(t, id, "healthy")
	var st containerState
	e.inspect(t, "container", id, &st)
	if uid := processUID(t, st.State.Pid); uid == 0 {
		t.Error("the bridge runs as root")
	}
	broker.Stop()
	e.waitHealth(t, id, "unhealthy")
}

// `docker compose up` of the shipped files, with locally built images: the
// first-run step makes the logins, the broker refuses anonymous clients
// and takes the Home Assistant login, and the bridge publishes to it with
// its own. A container of the bridge service can open a USB-serial node
// made on the host after it started, and not a node of another major.
func TestCompose(t *testing.T) {
	e := newEngine(t)
	if e.compose == nil {
		testenv.Missing(t, "docker compose v2", "run .ci/engine start, which builds it into the user cache, or set EM340_COMPOSE")
	}
	bridgeImage := e.bridgeImage(t, "0.0.0-containertest")
	mosquittoImage := e.mosquittoImage(t)

	// The shipped files, in a folder of their own: secrets/ is written
	// beside docker-compose.yml.
	root := testenv.RepoRoot()
	dir := filepath.Join(t.TempDir(), "compose")
	for _, f := range []string{"docker-compose.yml", "mosquitto/mosquitto.conf", "mosquitto/init.sh"} {
		fi, err := os.Stat(filepath.Join(root, "compose", f))
		must(t, err)
		copyFile(t, filepath.Join(root, "compose", f), filepath.Join(dir, f), fi.Mode().Perm())
	}
	port := freePort(t)
	project := name("compose")
	compose := func(args ...string) *exec.Cmd {
		cmd := exec.Command(e.compose[0], append(append(e.compose[1:], "--project-name", project, "--project-directory", dir,
			"--file", filepath.Join(dir, "docker-compose.yml")), args...)...)
		cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=1",
			"BRIDGE_IMAGE="+bridgeImage, "MOSQUITTO_IMAGE="+mosquittoImage, "MQTT_PORT="+strconv.Itoa(port))
		return cmd
	}
	t.Cleanup(func() {
		if out, err := compose("down", "--volumes", "--remove-orphans", "--timeout", "5").CombinedOutput(); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	if out, err := compose("up", "--detach", "--no-build", "--pull", "never").CombinedOutput(); err != nil {
		logs, _ := compose("logs", "--no-color").CombinedOutput()
		t.Fatalf("compose up: %v\n%s\nlogs:\n%s", err, out, logs)
	}

	addr := "127.0.0.1:" + strconv.Itoa(port)
	t.Run("anonymous refused", func(t *testing.T) {
		c, code, err := mqttConnect(addr, "", "")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if code != 5 {
			t.Errorf("CONNACK %d for an anonymous client, want 5 (not authorized)", code)
		}
	})
	t.Run("bad password refused", func(t *testing.T) {
		c, code, err := mqttConnect(addr, "homeassistant", "guessed")
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if code == 0 {
			t.Error("the broker accepted a wrong password")
		}
	})
	t.Run("bridge publishes", func(t *testing.T) {
		password, err := os.ReadFile(filepath.Join(dir, "secrets", "homeassistant.password"))
		must(t, err)
		c, code, err := mqttConnect(addr, "homeassistant", strings.TrimSpace(string(password)))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if code != 0 {
			t.Fatalf("CONNACK %d for the homeassistant login mosquitto-init made", code)
		}
		must(t, c.subscribe("em340/#"))
		topic, payload, err := c.next()
		if err != nil {
			logs, _ := compose("logs", "--no-color", "em340-bridge").CombinedOutput()
			t.Fatalf("nothing from the bridge: %v\nlogs:\n%s", err, logs)
		}
		t.Logf("the bridge published %s: %.80s", topic, payload)
	})
	t.Run("serial nodes", func(t *testing.T) { serialNodes(t, e, compose) })
}

// serialNodes runs the probe in a container of the bridge service (its
// device rules, /dev bind, user and groups), then makes device nodes on the
// host: ENXIO for a usb-serial or cdc-acm node (allowed by the cgroup; no
// driver behind a hand-made node) means the bridge could open a real one,
// EPERM for another major means the cgroup denies it.
func serialNodes(t *testing.T, e *engine, compose func(...string) *exec.Cmd) {
	probeDir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(probeDir, "probe"), "./testdata/probe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build probe: %v\n%s", err, out)
	}
	must(t, os.Chmod(probeDir, 0o755))

	base := "/dev/" + name("tty")
	nodes := []struct {
		major, minor uint32
		want         string
	}{
		{188, 239, "ENXIO"}, // usb-serial, ttyUSB*
		{166, 239, "ENXIO"}, // cdc-acm, ttyACM*
		{4, 64, "EPERM"},    // ttyS0: not a USB adapter
	}
	args := []string{"run", "--rm", "--no-deps", "-T", "--volume", probeDir + ":/probe:ro", "--entrypoint", "/probe/probe", "em340-bridge"}
	for _, n := range nodes {
		args = append(args, base+"-"+strconv.Itoa(int(n.major)))
	}
	cmd := compose(args...)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(hang):
			t.Error("the probe's compose run did not end")
		}
	})
	r := bufio.NewReader(stdout)
	if line := readLine(t, r); line != "ready" {
		t.Fatalf("probe said %q, want ready; stderr:\n%s", line, stderr.String())
	}
	for _, n := range nodes {
		path := base + "-" + strconv.Itoa(int(n.major))
		must(t, unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))))
		t.Cleanup(func() { _ = os.Remove(path) })
		must(t, os.Chmod(path, 0o666)) // not the umask: the cgroup, not the mode, must decide
	}
	for _, n := range nodes {
		path := base + "-" + strconv.Itoa(int(n.major))
		if got, want := readLine(t, r), path+" "+n.want; got != want {
			t.Errorf("probe: %q, want %q", got, want)
		}
	}
}

// addon/Dockerfile builds from the folder alone on top of the bridge image
// (as the release workflow builds it, and the Supervisor would), and the
// image runs as the Supervisor runs it (docker/app.py): options.json
// root-only in /data, the host's /dev bound read-only, tmpfs /tmp, tini.
// The bridge drops root for 65532 in the group of the host's serial nodes,
// holding no capability; it opens an adapter plugged in after the start
// (the simulator, laid out under the bound /dev as udev lays out an
// adapter) and publishes the meter; its health check goes healthy with the
// broker and unhealthy without.
func TestAddonImage(t *testing.T) {
	e := newEngine(t)
	base := e.bridgeImage(t, "0.0.0-containertest")
	image := name("addon") + ":0.0.0-containertest"
	e.run(t, "build", "--build-arg", "BUILD_FROM="+base, "--build-arg", "BUILD_VERSION=0.0.0-containertest",
		"--build-arg", "BUILD_ARCH=amd64", "-t", image, filepath.Join(testenv.RepoRoot(), "addon"))
	e.removeImage(t, image)

	var cfg struct {
		Config struct {
			Entrypoint []string
			Labels     map[string]string
		}
	}
	e.inspect(t, "image", image, &cfg)
	if got := strings.Join(cfg.Config.Entrypoint, " "); got != "/em340-bridge addon -user 65532:65532" {
		t.Errorf("entrypoint %q, want /em340-bridge addon -user 65532:65532", got)
	}
	if cfg.Config.Labels["io.hass.type"] != "app" || cfg.Config.Labels["io.hass.version"] != "0.0.0-containertest" {
		t.Errorf("labels %v lack io.hass.type=app and io.hass.version", cfg.Config.Labels)
	}

	// The host's /dev as udev leaves it: a serial port in group dialout,
	// the adapter not plugged in yet; the nodes runc wants, and the mount
	// points Docker mounts on.
	dialout := 20 // emsim gives its pty this group too
	if g, err := user.LookupGroup("dialout"); err == nil {
		dialout, _ = strconv.Atoi(g.Gid)
	}
	dev, err := os.MkdirTemp("", "em340ct-dev-")
	must(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dev) })
	must(t, os.Chmod(dev, 0o755))
	for _, d := range []string{"pts", "shm", "mqueue"} {
		must(t, os.Mkdir(filepath.Join(dev, d), 0o755))
	}
	for _, n := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"random", 1, 8}, {"urandom", 1, 9}} {
		must(t, unix.Mknod(filepath.Join(dev, n.name), unix.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))))
		must(t, os.Chmod(filepath.Join(dev, n.name), 0o666))
	}
	must(t, unix.Mknod(filepath.Join(dev, "ttyS0"), unix.S_IFCHR|0o660, int(unix.Mkdev(4, 64))))
	must(t, os.Chown(filepath.Join(dev, "ttyS0"), 0, dialout))

	broker := brokertest.Start(t)
	baseTopic := name("addon")
	ha := brokertest.Subscribe(t, broker, baseTopic+"/#")
	const byID = "usb-FTDI_FT232R_USB_UART_A10KXYZ-if00-port0"
	data := t.TempDir() // root, 0700, as the Supervisor's
	writeFile(t, filepath.Join(data, "options.json"), `{"serial_device": "/dev/serial/by-id/`+byID+`",
		"serial_baud": "9600", "serial_parity": "none", "serial_stop_bits": "1", "modbus_address": "1",
		"poll_interval": "1s", "mqtt_base_topic": "`+baseTopic+`", "log_level": "info",
		"mqtt_url": "`+broker.URL()+`", "modbus_timeout": "1s", "reconnect_min_delay": "500ms",
		"reconnect_max_delay": "1s", "stall_timeout": "3s"}`, 0o600)
	id := e.start(t, "addon", "--network", "host", "--init", "--tmpfs", "/tmp",
		"--mount", "type=bind,source="+dev+",target=/dev,readonly",
		// The simulator's pty stands in for the adapter: its major (136)
		// instead of the usb-serial ones uart allows.
		"--mount", "type=bind,source=/dev/pts,target=/dev/pts", "--device-cgroup-rule", "c 136:* rwm",
		"--volume", data+":/data", "-e", "SUPERVISOR_TOKEN=unused",
		"--health-interval", "1s", "--health-timeout", "5s", "--health-retries", "2", "--health-start-period", "1s",
		image)

	// The bridge is tini's child.
	var st containerState
	e.inspect(t, "container", id, &st)
	var bridge int
	deadline := time.Now().Add(hang)
	for {
		logs, _ := exec.Command(e.docker, "logs", id).CombinedOutput() // the bridge logs to stderr
		children, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", st.State.Pid, st.State.Pid))
		bridge, _ = strconv.Atoi(strings.TrimSpace(string(children)))
		if bridge != 0 && strings.Contains(string(logs), "running the bridge unprivileged") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bridge did not drop root:\n%s", logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	proc := processStatus(t, bridge)
	if proc["Uid"] != "65532 65532 65532 65532" || proc["Gid"] != "65532 65532 65532 65532" {
		t.Errorf("the bridge runs as Uid %s Gid %s, want 65532", proc["Uid"], proc["Gid"])
	}
	if proc["Groups"] != strconv.Itoa(dialout) {
		t.Errorf("supplementary groups %q, want the serial nodes' %d", proc["Groups"], dialout)
	}
	if proc["CapEff"] != "0000000000000000" || proc["CapPrm"] != "0000000000000000" {
		t.Errorf("capabilities effective %s permitted %s, want none", proc["CapEff"], proc["CapPrm"])
	}

	// Plugged in now: the adapter's node is the host's, in group dialout.
	sim := emsim.New(emsim.Options{Serial: "235411W", FineEnergy: true, ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB, FirmwareVersion: 1})
	must(t, sim.StartTree(emsim.DevTree{Root: dev, ByID: byID}))
	t.Cleanup(func() { _ = sim.Close() })
	topics, err := discovery.NewTopics(baseTopic, "homeassistant", "235411W")
	must(t, err)
	ha.Wait(0, topics.MeterState(), func(p string) bool { return strings.Contains(p, `"energy_import":`) }, hang)

	e.waitHealth(t, id, "healthy")
	broker.Stop()
	e.waitHealth(t, id, "unhealthy")
}

// processStatus is /proc/<pid>/status as name → value, fields joined by one space.
func processStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	m := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, _ := strings.Cut(line, ":")
		m[k] = strings.Join(strings.Fields(v), " ")
	}
	return m
}
