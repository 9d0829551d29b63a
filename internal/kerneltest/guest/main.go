// Command guest is /init of the kerneltest initramfs: it sets up the guest
// (mounts, modules, udevd, mosquitto), runs the bridges of the plan, asks the
// host over /dev/ttyS1 to unplug and replug the adapters, measures what the
// bridges publish and writes the results to the 9p share. Everything is timed
// on the guest's own clock, so the host's clock never enters a measurement.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/sys/unix"

	"github.com/em340-bridge/em340-bridge/internal/bridge"
	"github.com/em340-bridge/em340-bridge/internal/kerneltest"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

const share = "/mnt"

func main() {
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	err := run(log)
	if err != nil {
		log.Error("guest failed", "err", err)
		res := kerneltest.Results{Error: err.Error()}
		if b, e := json.Marshal(res); e == nil {
			_ = os.WriteFile(filepath.Join(share, "results.json"), b, 0o644)
		}
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}

func run(log *slog.Logger) error {
	if err := setup(log); err != nil {
		return err
	}
	var plan kerneltest.Plan
	b, err := os.ReadFile(filepath.Join(share, "plan.json"))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &plan); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 7*time.Minute)
	defer cancel()
	g, err := newGuest(ctx, log, plan)
	if err != nil {
		return err
	}
	res, err := g.runPlan(ctx)
	g.copyLogs() // before "done": the host stops qemu once it has the results
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(res, "", " ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(share, "results.json"), out, 0o644); err != nil {
		return err
	}
	g.ctl.send("done")
	return nil
}

// setup makes the initramfs a system: file systems, loopback, modules, the 9p
// share, udevd (with the coldplug events replayed) and the broker.
func setup(log *slog.Logger) error {
	mounts := []struct{ src, dst, fstype, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", ""},
		{"devpts", "/dev/pts", "devpts", ""},
		{"tmpfs", "/run", "tmpfs", "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
	}
	for _, m := range mounts {
		_ = os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.fstype, 0, m.data); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	mods, err := os.ReadFile("/etc/kerneltest/modules")
	if err != nil {
		return err
	}
	for _, path := range strings.Fields(string(mods)) {
		if err := loadModule(path); err != nil {
			return fmt.Errorf("module %s: %w", path, err)
		}
	}
	var mountErr error
	for range 50 {
		if mountErr = unix.Mount("host0", share, "9p", 0, "trans=virtio,version=9p2000.L,msize=262144"); mountErr == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if mountErr != nil {
		return fmt.Errorf("mount 9p: %w", mountErr)
	}
	_ = os.MkdirAll(filepath.Join(share, "logs"), 0o755)
	if err := startDaemon(filepath.Join(share, "logs", "udevd.log"), "/lib/systemd/systemd-udevd"); err != nil {
		return err
	}
	time.Sleep(300 * time.Millisecond)
	for _, args := range [][]string{{"trigger", "--action=add"}, {"settle", "--timeout=30"}} {
		if out, err := exec.Command("/bin/udevadm", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("udevadm %v: %w: %s", args, err, out)
		}
	}
	if err := startDaemon(filepath.Join(share, "logs", "mosquitto.log"), "/usr/sbin/mosquitto", "-c", "/etc/mosquitto.conf"); err != nil {
		return err
	}
	for range 100 {
		if c, err := net.Dial("tcp", "127.0.0.1:1883"); err == nil {
			c.Close()
			log.Info("guest ready")
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("mosquitto does not accept connections")
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// startDaemon runs a process for the guest's lifetime; the power-off ends it.
func startDaemon(logPath string, name string, args ...string) error {
	out, err := os.Create(logPath)
	if err != nil {
		return err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = cmd.Wait() }()
	return nil
}

// event is one observation, stamped on arrival.
type event struct {
	at      time.Time
	kind    string // "link", "state", "node"
	bridge  string // link, state
	adapter int    // node
	node    string // node
	payload string
}

// journal is the time-ordered log of observations from MQTT and inotify.
type journal struct {
	mu     sync.Mutex
	events []event
}

func (j *journal) add(e event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

// find returns the first event after t that matches.
func (j *journal) find(after time.Time, match func(event) bool) (event, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, e := range j.events {
		if e.at.After(after) && match(e) {
			return e, true
		}
	}
	return event{}, false
}

// last returns the last matching event.
func (j *journal) last(match func(event) bool) (event, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i := len(j.events) - 1; i >= 0; i-- {
		if match(j.events[i]) {
			return j.events[i], true
		}
	}
	return event{}, false
}

type guest struct {
	log     *slog.Logger
	plan    kerneltest.Plan
	j       *journal
	ctl     *control
	procs   map[string]*os.Process
	minor   map[int]string // adapter → ttyUSBn at boot
	pdenied []string
	starts  []kerneltest.Start
}

func newGuest(ctx context.Context, log *slog.Logger, plan kerneltest.Plan) (*guest, error) {
	g := &guest{log: log, plan: plan, j: &journal{}, procs: map[string]*os.Process{}, minor: map[int]string{}}
	var err error
	if g.ctl, err = openControl("/dev/ttyS1"); err != nil {
		return nil, err
	}
	if err := g.watchDev(ctx); err != nil {
		return nil, err
	}
	if err := g.subscribe(ctx); err != nil {
		return nil, err
	}
	// The root hub enumerates the adapters after xhci_pci loads, in the
	// background; wait until each has its node and its by-id link.
	deadline := time.Now().Add(30 * time.Second)
	for {
		nodes, _ := filepath.Glob("/sys/class/tty/ttyUSB*")
		for _, n := range nodes {
			if a, ok := adapterOf(filepath.Base(n)); ok {
				g.minor[a] = filepath.Base(n)
			}
		}
		ready := true
		for _, a := range plan.Adapters {
			if _, err := os.Stat(g.byID(a.Index)); g.minor[a.Index] == "" || err != nil {
				ready = false
			}
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not every adapter has a ttyUSB node and by-id link 30s after boot (have %v)", g.minor)
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Info("adapters", "nodes", g.minor)
	if err := warmUp(ctx, plan.Env); err != nil {
		return nil, err
	}
	// One at a time, each after the last one's first state: start → first
	// state is measured, and six Go programs starting at once would measure
	// each other.
	for _, b := range plan.Bridges {
		st, err := g.startBridge(ctx, b)
		if err != nil {
			return nil, err
		}
		g.starts = append(g.starts, st)
	}
	return g, nil
}

var portRE = regexp.MustCompile(`/usb\d+/\d+-(\d+)/`)

// adapterOf maps a ttyUSB node to the adapter by its root-hub port (port = index+1).
func adapterOf(node string) (int, bool) {
	p, err := filepath.EvalSymlinks("/sys/class/tty/" + node + "/device")
	if err != nil {
		return 0, false
	}
	m := portRE.FindStringSubmatch(p)
	if m == nil {
		return 0, false
	}
	n, _ := strconv.Atoi(m[1])
	return n - 1, true
}

// copyLogs puts the bridges' logs on the share for the host to show.
func (g *guest) copyLogs() {
	for _, b := range g.plan.Bridges {
		if data, err := os.ReadFile(filepath.Join("/tmp", b.Name+".log")); err == nil {
			_ = os.WriteFile(filepath.Join(share, "logs", b.Name+".log"), data, 0o644)
		}
	}
}

func (g *guest) byID(a int) string {
	return "/dev/serial/by-id/usb-QEMU_QEMU_USB_SERIAL_" + g.plan.Adapters[a].USBSerial + "-if00-port0"
}

// warmUp runs the bridge once before anything is measured. The guest's CPUs
// are emulated: the first run of any code pays for its translation (over a
// second for this binary's start), which a machine with real CPUs never
// does. This run reads a simulated meter on a pty of the guest's own (the
// adapters' simulators keep their request logs clean) and publishes under a
// topic the rig does not watch, until its first state, then stops.
func warmUp(ctx context.Context, env []string) error {
	sim := emsim.New(emsim.Options{Serial: "WARMUP01", FineEnergy: true, ProductionYear: 2021, MeasurementMode: meter.MeasurementModeB})
	if err := sim.Start("/tmp/warmup-tty"); err != nil {
		return fmt.Errorf("warm-up meter: %w", err)
	}
	defer sim.Close()
	cmd := exec.CommandContext(ctx, "/usr/bin/em340-bridge")
	cmd.Env = append(append([]string{}, env...),
		"EM340_SERIAL_DEVICE=/tmp/warmup-tty", "EM340_MQTT_BASE_TOPIC=warmup", "EM340_STATUS_FILE=/tmp/warmup.status")
	out, err := os.Create("/tmp/warmup.log")
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	// The status file (written every second) says when a poll succeeded; its
	// state is published a moment after.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if b, err := os.ReadFile("/tmp/warmup.status"); err == nil {
			var st bridge.HealthStatus
			if json.Unmarshal(b, &st) == nil && st.LastPoll.Unix() > 0 { // 0: none yet
				time.Sleep(500 * time.Millisecond)
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return errors.New("warm-up bridge: no state within 20 s (see /tmp/warmup.log)")
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("warm-up bridge: %w (see /tmp/warmup.log)", err)
	}
	return nil
}

// startBridge starts b and waits for its first state on MQTT; the Start says
// when things happened, from the moment before exec.
func (g *guest) startBridge(ctx context.Context, b kerneltest.Bridge) (kerneltest.Start, error) {
	st := kerneltest.Start{Bridge: b.Name, Kind: b.Kind, User: b.User, StartingMS: -1, StateMS: -1, OpenMS: -1, OnlineMS: -1}
	var device string
	switch b.Kind {
	case kerneltest.KindFixed:
		device = "/dev/" + g.minor[b.Adapter]
	case kerneltest.KindByID:
		device = g.byID(b.Adapter)
	case kerneltest.KindUSB:
		device = "usb:0403:6001:" + g.plan.Adapters[b.Adapter].USBSerial
	}
	dir := "/tmp/" + b.Name
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return st, err
	}
	// The log goes to tmpfs, not the 9p share: every 9p write costs the
	// bridge guest CPU, which would count against it in the outage.
	out, err := os.Create(filepath.Join("/tmp", b.Name+".log"))
	if err != nil {
		return st, err
	}
	cmd := exec.Command("/usr/bin/em340-bridge")
	cmd.Env = append(append([]string{}, g.plan.Env...),
		"EM340_SERIAL_DEVICE="+device,
		"EM340_MQTT_BASE_TOPIC=kt/"+b.Name,
		"EM340_STATUS_FILE="+dir+"/status",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if b.User == kerneltest.UserDialout {
		if err := os.Chown(dir, 1000, 1000); err != nil {
			return st, err
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{20}}}
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return st, fmt.Errorf("start bridge %s: %w", b.Name, err)
	}
	go func() { _ = cmd.Wait() }()
	g.procs[b.Name] = cmd.Process
	g.log.Info("bridge started", "name", b.Name, "device", device, "pid", cmd.Process.Pid)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if e, ok := g.j.find(started, func(e event) bool { return e.kind == "state" && e.bridge == b.Name }); ok {
			st.StateMS = ms(e.at.Sub(started))
			break
		}
		if time.Now().After(deadline) {
			return st, fmt.Errorf("bridge %s: no state within 30 s of its start", b.Name)
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	lines := bridgeLog(b.Name)
	st.StartingMS = sinceLog(lines, started, "em340-bridge starting")
	st.OpenMS = sinceLog(lines, started, "port opened")
	st.OnlineMS = sinceLog(lines, started, "serial link online")
	st.LatencyTimer = latencyTimer(g.minor[b.Adapter])
	return st, nil
}

// watchDev records, from inotify, every ttyUSB node the kernel creates in
// /dev, udev making it group-accessible (an IN_ATTRIB after which the node is
// 0660 group dialout) and udev's by-id links (renamed into place).
// /dev/serial and /dev/serial/by-id go with the last adapter and come back
// with the next: each is watched again as it is created, and what it already
// holds then is recorded at that moment.
func (g *guest) watchDev(ctx context.Context) error {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return err
	}
	const serialDir, byIDDir = "/dev/serial", "/dev/serial/by-id"
	var mu sync.Mutex // guards dirs: wd → directory
	dirs := map[int]string{}
	add := func(dir string, mask uint32) {
		wd, err := unix.InotifyAddWatch(fd, dir, mask)
		if err != nil {
			return
		}
		mu.Lock()
		dirs[wd] = dir
		mu.Unlock()
	}
	byIDLinks := func(at time.Time) {
		ents, _ := os.ReadDir(byIDDir)
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				g.j.add(event{at: at, kind: "byid", node: e.Name()})
			}
		}
	}
	add("/dev", unix.IN_CREATE|unix.IN_ATTRIB)
	add(serialDir, unix.IN_CREATE)
	add(byIDDir, unix.IN_CREATE|unix.IN_MOVED_TO)
	go func() {
		buf := make([]byte, 64*1024)
		for {
			n, err := unix.Read(fd, buf)
			at := time.Now()
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(raw.Len)]), "\x00")
				off += unix.SizeofInotifyEvent + int(raw.Len)
				mu.Lock()
				dir := dirs[int(raw.Wd)]
				if raw.Mask&unix.IN_IGNORED != 0 {
					delete(dirs, int(raw.Wd))
				}
				mu.Unlock()
				switch {
				case dir == "/dev" && raw.Mask&unix.IN_CREATE != 0 && strings.HasPrefix(name, "ttyUSB"):
					go func() {
						// The sysfs link may trail the node by a moment.
						a, ok := adapterOf(name)
						for try := 0; !ok && try < 40; try++ {
							time.Sleep(5 * time.Millisecond)
							a, ok = adapterOf(name)
						}
						if !ok {
							a = -1
						}
						g.j.add(event{at: at, kind: "node", adapter: a, node: name})
					}()
				case dir == "/dev" && raw.Mask&unix.IN_ATTRIB != 0 && strings.HasPrefix(name, "ttyUSB"):
					var st unix.Stat_t
					if unix.Stat("/dev/"+name, &st) == nil && st.Mode&0o060 == 0o060 && st.Gid == 20 {
						g.j.add(event{at: at, kind: "chmod", node: name})
					}
				case dir == "/dev" && raw.Mask&unix.IN_CREATE != 0 && name == "serial":
					add(serialDir, unix.IN_CREATE)
					if _, err := os.Stat(byIDDir); err == nil {
						add(byIDDir, unix.IN_CREATE|unix.IN_MOVED_TO)
						byIDLinks(at)
					}
				case dir == serialDir && raw.Mask&unix.IN_CREATE != 0 && name == "by-id":
					add(byIDDir, unix.IN_CREATE|unix.IN_MOVED_TO)
					byIDLinks(at)
				case dir == byIDDir && raw.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0 && !strings.HasPrefix(name, "."):
					g.j.add(event{at: at, kind: "byid", node: name})
				}
			}
		}
	}()
	return nil
}

// subscribe records every link and state message of every bridge.
func (g *guest) subscribe(ctx context.Context) error {
	conn, err := net.Dial("tcp", "127.0.0.1:1883")
	if err != nil {
		return err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnPublishReceived: []func(paho.PublishReceived) (bool, error){
		func(pr paho.PublishReceived) (bool, error) {
			at := time.Now()
			parts := strings.Split(pr.Packet.Topic, "/")
			if len(parts) != 4 || parts[0] != "kt" {
				return true, nil
			}
			e := event{at: at, bridge: parts[1], payload: string(pr.Packet.Payload)}
			switch {
			case parts[2] == "bridge" && parts[3] == "link":
				e.kind = "link"
			case parts[3] == "state":
				e.kind = "state"
			default:
				return true, nil
			}
			g.j.add(e)
			return true, nil
		}}})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "kerneltest-guest", CleanStart: true, KeepAlive: 0}); err != nil {
		return err
	}
	_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "kt/#", QoS: 0}}})
	return err
}

// link is the part of the link payload the rig judges.
type link struct {
	State string `json:"state"`
	Cause string `json:"cause"`
}

func parseLink(p string) link {
	var l link
	_ = json.Unmarshal([]byte(p), &l)
	return l
}

func (g *guest) waitOnline(ctx context.Context, after time.Time, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		missing := ""
		for _, b := range g.plan.Bridges {
			if _, ok := g.j.find(after, func(e event) bool { return e.kind == "state" && e.bridge == b.Name }); !ok {
				missing = b.Name
				break
			}
		}
		if missing == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("not every bridge published a state in time")
}

func (g *guest) runPlan(ctx context.Context) (kerneltest.Results, error) {
	res := kerneltest.Results{Starts: g.starts, BaselineFDs: map[string]int{}, BaselineThreads: map[string]int{}, BaselineGoroutines: map[string]int{}}
	if err := g.waitOnline(ctx, time.Time{}, 60*time.Second); err != nil {
		return res, err
	}
	time.Sleep(3 * time.Second)
	for _, b := range g.plan.Bridges {
		pid := g.procs[b.Name].Pid
		res.BaselineFDs[b.Name], res.BaselineThreads[b.Name] = fdCount(pid), threadCount(pid)
		res.BaselineGoroutines[b.Name] = goroutines(b.Name)
	}
	for _, sc := range g.plan.Scenarios {
		for cycle := 1; cycle <= sc.Cycles; cycle++ {
			cycles, err := g.cycle(ctx, sc, cycle)
			if err != nil {
				return res, fmt.Errorf("%s cycle %d: %w", sc.Name, cycle, err)
			}
			res.Cycles = append(res.Cycles, cycles...)
		}
	}
	// Last, with one bridge stopped so its adapter is free: the adapter's own
	// latency, the meter latency the report assumes beside 0 ms.
	var err error
	res.AdapterRoundTripMS, res.AdapterRoundTripWorstMS, err = g.probeAdapter(g.plan.Bridges[0])
	if err != nil {
		return res, fmt.Errorf("adapter round trip: %w", err)
	}
	g.j.mu.Lock()
	for _, e := range g.j.events {
		if e.kind == "link" && parseLink(e.payload).Cause == "permission denied" {
			res.PermissionDenied = append(res.PermissionDenied, e.bridge+": "+e.payload)
		}
	}
	g.j.mu.Unlock()
	return res, nil
}

// probeAdapter stops bridge b and measures its adapter's round trip (see
// adapterRoundTrip), in ms: median and worst of 20.
func (g *guest) probeAdapter(b kerneltest.Bridge) (median, worst float64, err error) {
	p := g.procs[b.Name]
	if err := p.Kill(); err != nil {
		return 0, 0, err
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.Pid)); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("bridge %s still running 5 s after SIGKILL", b.Name)
		}
	}
	m, w, err := adapterRoundTrip("/dev/"+g.minor[b.Adapter], 115200, 20)
	return ms(m), ms(w), err
}

// cycle unplugs every adapter at once, waits out the outage, replugs them one
// at a time in the order of their boot-time ttyUSB numbers (each after the
// previous one's node exists, so the numbers come back the same), and judges
// every bridge.
func (g *guest) cycle(ctx context.Context, sc kerneltest.Scenario, n int) ([]kerneltest.Cycle, error) {
	g.log.Info("cycle", "scenario", sc.Name, "n", n)
	var held []*os.File
	if sc.HoldOldFD {
		for _, a := range g.plan.Adapters {
			f, err := os.OpenFile("/dev/"+g.minor[a.Index], os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
			if err != nil {
				return nil, fmt.Errorf("hold old node: %w", err)
			}
			held = append(held, f)
		}
		defer func() {
			for _, f := range held {
				f.Close()
			}
		}()
	}
	type adapterTimes struct {
		del, addSent, add, node time.Time
		nodeName                string
		inRequest               bool
	}
	times := make([]adapterTimes, len(g.plan.Adapters))
	cpu0 := map[string]int{}
	delSent := time.Now()
	for _, a := range g.plan.Adapters {
		g.ctl.send(fmt.Sprintf("del %d", a.Index))
	}
	for range g.plan.Adapters {
		r, err := g.ctl.reply(ctx, 10*time.Second)
		if err != nil {
			return nil, err
		}
		var i int
		var inReq bool
		if _, err := fmt.Sscanf(r.line, "ok del %d %t", &i, &inReq); err != nil {
			return nil, fmt.Errorf("host: %q", r.line)
		}
		times[i].del, times[i].inRequest = r.at, inReq
		// The outage starts here for the CPU count: before it the bridge was
		// polling, as it should.
		for _, b := range g.plan.Bridges {
			if b.Adapter == i {
				cpu0[b.Name] = cpuTicks(g.procs[b.Name].Pid)
			}
		}
	}
	time.Sleep(time.Duration(sc.OutageMS) * time.Millisecond)
	order := make([]int, 0, len(g.plan.Adapters))
	for _, a := range g.plan.Adapters {
		order = append(order, a.Index)
	}
	sort.Slice(order, func(x, y int) bool { return g.minor[order[x]] < g.minor[order[y]] })
	// The CPU count ends before the first device_add: from then on the other
	// adapters' enumeration and udev events would be counted too, and what is
	// judged is the cost of the outage itself (a read loop spinning on a hung
	// up line shows here).
	cpu1 := map[string]int{}
	for _, b := range g.plan.Bridges {
		cpu1[b.Name] = cpuTicks(g.procs[b.Name].Pid)
	}
	cpuEnd := time.Now()
	for _, i := range order {
		sent := time.Now()
		g.ctl.send(fmt.Sprintf("add %d", i))
		r, err := g.ctl.reply(ctx, 10*time.Second)
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(r.line, fmt.Sprintf("ok add %d", i)) {
			return nil, fmt.Errorf("host: %q", r.line)
		}
		times[i].addSent, times[i].add = sent, r.at
		// Adapters are replugged one at a time, so a node whose adapter could
		// not be read from sysfs is this one's.
		deadline := time.Now().Add(15 * time.Second)
		for {
			if e, ok := g.j.find(sent, func(e event) bool { return e.kind == "node" && (e.adapter == i || e.adapter < 0) }); ok {
				times[i].node, times[i].nodeName = e.at, e.node
				break
			}
			if time.Now().After(deadline) {
				// Recorded as a cycle without a node (Node ""): qemu did not
				// re-attach the device, which the host counts as the rig's
				// failure, not the bridge's; the next cycles still run.
				g.log.Error("no ttyUSB node within 15s of device_add", "adapter", i)
				times[i].node, times[i].nodeName = time.Now(), ""
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Let this adapter's bridges recover before the next device_add: under
		// TCG the next adapter's enumeration and udev work would otherwise
		// take the emulated CPUs from them and inflate what is measured.
		settle := times[i].node.Add(2500 * time.Millisecond)
		for time.Now().Before(settle) {
			recovered := true
			for _, b := range g.plan.Bridges {
				if b.Adapter != i || (sc.HoldOldFD && b.Kind == kerneltest.KindFixed) {
					continue
				}
				if _, ok := g.j.find(times[i].node, func(e event) bool { return e.kind == "state" && e.bridge == b.Name }); !ok {
					recovered = false
				}
			}
			if recovered {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Wait for recovery: every bridge expected to recover has a state after its
	// node appeared, or 15 s have passed; then a further second of watching.
	expect := func(b kerneltest.Bridge) bool { return !(sc.HoldOldFD && b.Kind == kerneltest.KindFixed) }
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		all := true
		for _, b := range g.plan.Bridges {
			if !expect(b) {
				continue
			}
			if _, ok := g.j.find(times[b.Adapter].node, func(e event) bool { return e.kind == "state" && e.bridge == b.Name }); !ok {
				all = false
			}
		}
		if all {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	watch := time.Second
	if sc.HoldOldFD {
		watch = 8 * time.Second // the fixed path must stay missing, not just be slow
	}
	time.Sleep(watch)
	// The node's moment is the first sight of it: the rig's inotify reader or
	// any bridge's watch, whichever woke first (with two vCPUs a bridge can).
	logs := map[string][]logLine{}
	for _, b := range g.plan.Bridges {
		logs[b.Name] = bridgeLog(b.Name)
	}
	for i, t := range times {
		if t.nodeName == "" {
			continue
		}
		for _, lines := range logs {
			if at, ok := sawCreate(lines, t.addSent, t.nodeName); ok && at.Before(t.node) {
				times[i].node = at
			}
		}
	}
	var out []kerneltest.Cycle
	for _, b := range g.plan.Bridges {
		t := times[b.Adapter]
		pid := g.procs[b.Name].Pid
		c := kerneltest.Cycle{
			Scenario: sc.Name, Cycle: n, Bridge: b.Name, Kind: b.Kind, User: b.User,
			ExpectRecovery: expect(b), InRequest: t.inRequest, Node: t.nodeName,
			DetectMS: -1, NodeToStateMS: -1, AddToStateMS: -1, OfflineMS: -1,
			OutageMS: ms(t.add.Sub(t.del)),
			FDs:      fdCount(pid), Threads: threadCount(pid), Goroutines: goroutines(b.Name),
			ChmodMS: -1, ByIDMS: -1, FirstAttemptMS: -1, OpenMS: -1, OnlineMS: -1,
			LatencyTimer: latencyTimer(t.nodeName),
		}
		if t.nodeName != "" {
			since := func(e event, ok bool) float64 {
				if !ok {
					return -1
				}
				return ms(e.at.Sub(t.node))
			}
			c.ChmodMS = since(g.j.find(t.node, func(e event) bool { return e.kind == "chmod" && e.node == t.nodeName }))
			serial := g.plan.Adapters[b.Adapter].USBSerial
			c.ByIDMS = since(g.j.find(t.node, func(e event) bool { return e.kind == "byid" && strings.Contains(e.node, "_"+serial+"-") }))
			lines := logs[b.Name]
			c.FirstAttemptMS = sinceLog(lines, t.node, "open failed", "open denied, waiting for udev to set the group", "port opened")
			c.OpenMS = sinceLog(lines, t.node, "port opened")
			c.OnlineMS = sinceLog(lines, t.node, "serial link online")
		}
		if wall := cpuEnd.Sub(t.del); wall > 0 {
			c.CPUWindowMS = ms(wall)
			c.CPUPercent = float64(cpu1[b.Name]-cpu0[b.Name]) / 100 / wall.Seconds() * 100
		}
		// From the del request on: the bridge may publish before the host's
		// acknowledgement of device_del has reached the guest (then 0).
		if e, ok := g.j.find(delSent, func(e event) bool {
			return e.kind == "link" && e.bridge == b.Name && parseLink(e.payload).State != "online"
		}); ok && e.at.Before(t.node) {
			c.DetectMS = max(0, ms(e.at.Sub(t.del)))
		}
		if e, ok := g.j.find(t.node, func(e event) bool { return e.kind == "state" && e.bridge == b.Name }); ok && t.nodeName != "" {
			c.NodeToStateMS, c.AddToStateMS = ms(e.at.Sub(t.node)), ms(e.at.Sub(t.add))
		}
		if e, ok := g.j.find(t.del, func(e event) bool {
			return e.kind == "link" && e.bridge == b.Name && parseLink(e.payload).State == "offline"
		}); ok && e.at.Before(t.node) {
			c.OfflineMS = ms(e.at.Sub(t.del))
		}
		if e, ok := g.j.last(func(e event) bool { return e.kind == "link" && e.bridge == b.Name }); ok {
			c.LastLink = e.payload
		}
		out = append(out, c)
	}
	// The old node is released at the end of a held cycle; the boot-time
	// numbers are what later cycles expect, so renumber from the kernel's view.
	if sc.HoldOldFD {
		for i, t := range times {
			if t.nodeName != "" {
				g.minor[i] = t.nodeName
			}
		}
	}
	return out, nil
}

// logLine is one line of a bridge's JSON log.
type logLine struct {
	Time  time.Time `json:"time"`
	Msg   string    `json:"msg"`
	Event string    `json:"event"` // the watch's inotify event, on "the device may be there"
}

// sawCreate is when, after t, the bridge's directory watch logged the kernel
// creating /dev/node.
func sawCreate(lines []logLine, t time.Time, node string) (time.Time, bool) {
	for _, l := range lines {
		if l.Time.After(t) && l.Msg == "the device may be there" &&
			strings.HasPrefix(l.Event, "CREATE") && strings.Contains(l.Event, `"/dev/`+node+`"`) {
			return l.Time, true
		}
	}
	return time.Time{}, false
}

// bridgeLog reads the bridge's log (EM340_LOG_FORMAT=json, on tmpfs).
func bridgeLog(name string) []logLine {
	f, err := os.Open(filepath.Join("/tmp", name+".log"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && !l.Time.IsZero() {
			lines = append(lines, l)
		}
	}
	return lines
}

// sinceLog is the time from t to the first line after t with one of msgs, in
// ms; -1 if there is none.
func sinceLog(lines []logLine, t time.Time, msgs ...string) float64 {
	for _, l := range lines {
		if l.Time.After(t) && slices.Contains(msgs, l.Msg) {
			return ms(l.Time.Sub(t))
		}
	}
	return -1
}

// latencyTimer is the FTDI latency timer of the tty node ("ttyUSB0") in ms,
// as ftdi_sio shows it; -1 if it cannot be read.
func latencyTimer(node string) int {
	if node == "" {
		return -1
	}
	b, err := os.ReadFile(filepath.Join("/sys/class/tty", node, "device", "latency_timer"))
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return -1
	}
	return n
}

// goroutines is the count in the bridge's status file, written every second;
// -1 if it cannot be read.
func goroutines(name string) int {
	b, err := os.ReadFile(filepath.Join("/tmp", name, "status"))
	if err != nil {
		return -1
	}
	var st bridge.HealthStatus
	if json.Unmarshal(b, &st) != nil || st.Goroutines == 0 {
		return -1
	}
	return st.Goroutines
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// cpuTicks is utime+stime of a process in clock ticks (USER_HZ = 100).
func cpuTicks(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return u + k
}

// fdCount is the process's open fds at rest: the least of a few looks 20 ms
// apart. With two vCPUs the bridge runs while it is counted, and an fd that
// is open for a moment (the status file written every second, a sysfs read)
// is no leak; a leaked one is there at every look.
func fdCount(pid int) int {
	least := -1
	for i := range 5 {
		if i > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if least < 0 || len(ents) < least {
			least = len(ents)
		}
	}
	return least
}

func threadCount(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// control is the line protocol with the host on the second serial port:
// the guest sends "del N" / "add N" / "done", the host answers
// "ok del N INREQUEST" / "ok add N" once QMP has done it.
type control struct {
	f       *os.File
	replies chan reply
}

type reply struct {
	at   time.Time
	line string
}

func openControl(path string) (*control, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	t, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.B115200 | unix.CLOCAL | unix.CREAD
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(int(f.Fd()), unix.TCSETS, t); err != nil {
		return nil, err
	}
	c := &control{f: f, replies: make(chan reply, 64)}
	go func() {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			c.replies <- reply{at: time.Now(), line: strings.TrimSpace(sc.Text())}
		}
	}()
	c.send("hello")
	return c, nil
}

func (c *control) send(line string) { _, _ = c.f.WriteString(line + "\n") }

func (c *control) reply(ctx context.Context, timeout time.Duration) (reply, error) {
	for {
		select {
		case r := <-c.replies:
			if r.line == "" {
				continue
			}
			return r, nil
		case <-ctx.Done():
			return reply{}, ctx.Err()
		case <-time.After(timeout):
			return reply{}, errors.New("no reply from the host")
		}
	}
}
