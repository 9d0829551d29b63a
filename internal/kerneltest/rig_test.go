package kerneltest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/testenv"
	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// What the rig asserts, and what it only measures. Speed is a target the
// report (and docs/BENCHMARKS.md) shows against, never a test's assertion:
//   - recovery through the directory watch: the backoff is set so long
//     (reconnectDelay) that only the watch can bring a bridge back within
//     watchBound of the node appearing; a missed replug waits the backoff out;
//   - no spin: an unplug inside a request costs a spinning client the whole
//     request timeout of CPU (≥ 50% of the window); a bridge that notices the
//     hang-up stays far below maxOutageCPU even under emulation.
const (
	targetNodeToState = time.Second // the goal: node created → first state on MQTT (reported)
	reconnectDelay    = 20 * time.Second
	watchBound        = 5 * time.Second
	maxOutageCPU      = 40.0 // percent of one core over the outage window
	// goroutineSlack is what the count may differ by between two moments of
	// steady state (a publish or a timer in flight); a leak of one per cycle
	// exceeds it over the run's eight cycles.
	goroutineSlack = 3
)

// offlineAfter is EM340_OFFLINE_AFTER in the guest, shorter than the 60 s outage.
const offlineAfter = 30 * time.Second

// matrix is every path kind as root and as a dialout user, one adapter each.
// All share one guest: one boot, and every bridge sees the same kernel events.
func matrix() ([]Adapter, []Bridge) {
	var adapters []Adapter
	var bridges []Bridge
	for _, kind := range []string{KindFixed, KindByID, KindUSB} {
		for _, user := range []string{UserRoot, UserDialout} {
			i := len(adapters)
			adapters = append(adapters, Adapter{Index: i, USBSerial: fmt.Sprintf("KTADP%03d", i), MeterID: fmt.Sprintf("KT%05dW", i)})
			name := strings.ReplaceAll(strings.ToLower(kind), "-", "") + "-" + user
			bridges = append(bridges, Bridge{Name: name, Kind: kind, User: user, Adapter: i})
		}
	}
	return adapters, bridges
}

var scenarios = []Scenario{
	{Name: "unplug 5s", OutageMS: 5000, Cycles: 1},
	{Name: "unplug 60s", OutageMS: 60000, Cycles: 1},
	{Name: "rapid 2s", OutageMS: 2000, Cycles: 5},
	{Name: "held old fd", OutageMS: 5000, Cycles: 1, HoldOldFD: true},
}

func TestRealKernelUnplug(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a kernel in qemu for minutes")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		testenv.Missing(t, "qemu-system-x86_64", "the real-kernel unplug rig boots Debian's kernel in qemu; install it with apt-get install qemu-system-x86")
	}
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	root := fetchGuestRoot(t)
	dir := t.TempDir()
	sharedDir := filepath.Join(dir, "share")
	must(t, os.Mkdir(sharedDir, 0o777))
	buildStatic(t, "./cmd/em340-bridge", filepath.Join(dir, "em340-bridge"))
	buildStatic(t, "./internal/kerneltest/guest", filepath.Join(dir, "guest"))
	initrd := filepath.Join(dir, "initrd")
	writeInitramfs(t, root, filepath.Join(dir, "guest"), filepath.Join(dir, "em340-bridge"), initrd)
	t.Logf("guest image ready after %v", time.Since(started).Round(time.Second))

	adapters, bridges := matrix()
	plan := Plan{Adapters: adapters, Bridges: bridges, Scenarios: scenarios, Env: []string{
		"EM340_MQTT_URL=mqtt://127.0.0.1:1883",
		"EM340_SERIAL_BAUD=115200",
		"EM340_POLL_INTERVAL=1s",
		"EM340_MODBUS_TIMEOUT=1s",
		"EM340_OFFLINE_AFTER=" + offlineAfter.String(),
		// Only the directory watch can bring a bridge back within watchBound.
		"EM340_RECONNECT_MIN_DELAY=" + reconnectDelay.String(),
		"EM340_RECONNECT_MAX_DELAY=" + reconnectDelay.String(),
		"EM340_LOG_LEVEL=debug",
		"EM340_LOG_FORMAT=json", // the guest reads the link's timeline from it
	}}
	b, err := json.Marshal(plan)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(sharedDir, "plan.json"), b, 0o644))

	sims := make([]*emsim.Sim, len(adapters))
	for i, a := range adapters {
		sims[i] = emsim.New(emsim.Options{Serial: a.MeterID, FineEnergy: true, ProductionYear: 2021, MeasurementMode: meter.MeasurementModeB, WireTiming: true, Baud: 115200})
		must(t, sims[i].Start(filepath.Join(dir, fmt.Sprintf("adapter%d", i))))
		t.Cleanup(func() { _ = sims[i].Close() })
	}

	console := filepath.Join(dir, "console.log")
	// Two vCPUs (multi-threaded TCG), as on any machine that runs Home
	// Assistant: with one, udevd's workers, the broker, the subscriber and
	// six bridges took turns on a single emulated CPU, and what was measured
	// was mostly whose turn it was. EM340_KERNELTEST_ACCEL=kvm is for a
	// machine whose KVM can run a stock kernel (this project's cannot: a
	// nested PVM KVM hangs it), to measure at native speed.
	accel := "tcg,thread=multi"
	if v := os.Getenv("EM340_KERNELTEST_ACCEL"); v != "" {
		accel = v
	}
	args := []string{
		"-accel", accel, "-m", "512", "-smp", "2", "-nographic", "-monitor", "none", "-no-reboot", "-nic", "none",
		"-kernel", root.kernel(), "-initrd", initrd, "-append", "console=ttyS0 panic=-1 quiet",
		"-serial", "file:" + console,
		"-chardev", "socket,id=ctl,path=" + filepath.Join(dir, "ctl.sock") + ",server=on,wait=off",
		"-device", "isa-serial,chardev=ctl",
		"-qmp", "unix:" + filepath.Join(dir, "qmp.sock") + ",server=on,wait=off",
		"-virtfs", "local,path=" + sharedDir + ",mount_tag=host0,security_model=none,id=fs0",
		"-device", "qemu-xhci,id=xhci,p2=8,p3=8",
	}
	for i, a := range adapters {
		args = append(args, "-chardev", fmt.Sprintf("serial,id=c%d,path=%s", i, filepath.Join(dir, fmt.Sprintf("adapter%d", i))),
			"-device", adapterDevice(a))
	}
	// At a lower priority: the two vCPU threads can take both of a CI
	// machine's cores, and go test runs other packages meanwhile, whose
	// request timeouts are a few hundred ms. Alone on a machine, the guest
	// runs as fast niced as not.
	cmd := exec.Command("nice", append([]string{"-n", "10", qemu}, args...)...)
	qemuOut, err := os.Create(filepath.Join(dir, "qemu.log"))
	must(t, err)
	defer qemuOut.Close()
	cmd.Stdout, cmd.Stderr = qemuOut, qemuOut
	must(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	defer func() {
		if keep := os.Getenv("EM340_KERNELTEST_LOGS"); keep != "" {
			// The guest's logs (bridges, udevd, mosquitto) for a closer look.
			if err := os.CopyFS(keep, os.DirFS(filepath.Join(sharedDir, "logs"))); err != nil {
				t.Errorf("EM340_KERNELTEST_LOGS: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("console tail:\n%s", tail(console, 60))
			t.Logf("qemu output:\n%s", tail(filepath.Join(dir, "qemu.log"), 20))
			for _, br := range bridges {
				t.Logf("bridge %s log tail:\n%s", br.Name, tail(filepath.Join(sharedDir, "logs", br.Name+".log"), 15))
			}
		}
	}()

	qmp, err := dialQMP(ctx, filepath.Join(dir, "qmp.sock"))
	must(t, err)
	defer qmp.Close()
	ctl, err := dialUnix(ctx, filepath.Join(dir, "ctl.sock"))
	must(t, err)
	defer ctl.Close()

	replugs := newReplugLog()
	if err := serveGuest(ctx, ctl, qmp, adapters, sims, replugs, exited); err != nil {
		t.Fatalf("driving the guest: %v (after %v)", err, time.Since(started).Round(time.Second))
	}
	b, err = os.ReadFile(filepath.Join(sharedDir, "results.json"))
	if err != nil {
		t.Fatalf("no results from the guest: %v", err)
	}
	var res Results
	must(t, json.Unmarshal(b, &res))
	if res.Error != "" {
		t.Fatalf("guest: %s", res.Error)
	}
	t.Logf("rig finished in %v", time.Since(started).Round(time.Second))
	report(t, res, bridges, replugs)
	judge(t, res, len(bridges))
}

func adapterDevice(a Adapter) string {
	return fmt.Sprintf("usb-serial,id=ser%d,bus=xhci.0,port=%d,chardev=c%d,serial=%s", a.Index, a.Index+1, a.Index, a.USBSerial)
}

// judge asserts the pass criteria on every cycle of every bridge.
func judge(t *testing.T, res Results, nBridges int) {
	t.Helper()
	wantCycles := 0
	for _, sc := range scenarios {
		wantCycles += sc.Cycles * nBridges
	}
	if len(res.Starts) != nBridges {
		t.Errorf("results have %d bridge starts, want %d", len(res.Starts), nBridges)
	}
	// ftdi_sio keeps the chip's 16 ms latency timer unless asked; the bridge
	// asks, as root and as a dialout user alike (see link/latency.go).
	for _, st := range res.Starts {
		if st.LatencyTimer != 1 {
			t.Errorf("start of %s as %s: the adapter's FTDI latency timer is %d ms, want 1", st.Kind, st.User, st.LatencyTimer)
		}
	}
	if len(res.Cycles) != wantCycles {
		t.Errorf("results have %d bridge cycles, want %d", len(res.Cycles), wantCycles)
	}
	for _, pd := range res.PermissionDenied {
		t.Errorf("false cause published: %s", pd)
	}
	last := map[string]Cycle{}
	notJudged := 0
	defer func() {
		if notJudged > len(res.Cycles)/4 {
			t.Errorf("%d of %d cycles not judged: the rig, not the bridge, is failing", notJudged, len(res.Cycles))
		}
	}()
	for _, c := range res.Cycles {
		id := fmt.Sprintf("%s #%d %s as %s", c.Scenario, c.Cycle, c.Kind, c.User)
		if c.DetectMS < 0 {
			t.Errorf("%s: the unplug never showed on the link topic", id)
		}
		if c.CPUPercent >= maxOutageCPU {
			t.Errorf("%s: %.1f%% of a core over %.0f ms of the outage (in request: %v), want < %.0f%%", id, c.CPUPercent, c.CPUWindowMS, c.InRequest, maxOutageCPU)
		}
		if c.OutageMS > float64((offlineAfter+5*time.Second).Milliseconds()) && c.OfflineMS < 0 {
			t.Errorf("%s: link never went offline in a %.0f ms outage (EM340_OFFLINE_AFTER=%v)", id, c.OutageMS, offlineAfter)
		}
		if !c.ExpectRecovery {
			l := struct{ State, Cause string }{}
			_ = json.Unmarshal([]byte(c.LastLink), &l)
			if c.NodeToStateMS >= 0 || l.State == "online" || l.Cause != "adapter missing" {
				t.Errorf("%s: the old /dev path cannot return while its node is held; want reconnecting with cause adapter missing and no state, got state after %.0f ms, link %s", id, c.NodeToStateMS, c.LastLink)
			}
			continue
		}
		switch {
		case c.Node == "":
			// qemu did not re-attach the device (seen under TCG: control
			// transfers time out in the guest); nothing for the bridge to find.
			notJudged++
			t.Logf("%s: the kernel created no node on replug; cycle not judged", id)
			continue
		case c.NodeToStateMS < 0:
			t.Errorf("%s: no state within 15 s of %s appearing", id, c.Node)
		case c.NodeToStateMS > float64(watchBound.Milliseconds()):
			t.Errorf("%s: first state %.0f ms after the kernel created %s: the watch missed it (backoff %v)", id, c.NodeToStateMS, c.Node, reconnectDelay)
		case c.NodeToStateMS > float64(targetNodeToState.Milliseconds()):
			t.Logf("%s: first state %.0f ms after the node, over the %v target", id, c.NodeToStateMS, targetNodeToState)
		}
		if c.NodeToStateMS >= 0 && c.LatencyTimer != 1 {
			t.Errorf("%s: %s's FTDI latency timer is %d ms after the recovery, want 1", id, c.Node, c.LatencyTimer)
		}
		last[c.Bridge] = c
	}
	for name, c := range last {
		if base, ok := res.BaselineFDs[name]; ok && c.FDs > base {
			t.Errorf("%s: %d open fds after the last recovered cycle, %d before the first: a leak", name, c.FDs, base)
		}
		if base, ok := res.BaselineThreads[name]; ok && c.Threads > base+2 {
			t.Errorf("%s: %d threads after the last recovered cycle, %d before the first", name, c.Threads, base)
		}
		switch base, ok := res.BaselineGoroutines[name]; {
		case !ok || base < 0 || c.Goroutines < 0:
			t.Errorf("%s: goroutines not known (status file: %d before the first cycle, %d after the last)", name, base, c.Goroutines)
		case c.Goroutines > base+goroutineSlack:
			t.Errorf("%s: %d goroutines after the last recovered cycle, %d before the first: a leak", name, c.Goroutines, base)
		}
	}
}

// reportRow is one line of the benchmark table: one bridge, one replug.
// Times are ms from the kernel creating the node (guest clock), -1 = never.
type reportRow struct {
	Scenario      string  `json:"scenario"`
	Cycle         int     `json:"cycle"`
	Kind          string  `json:"kind"`
	User          string  `json:"user"`
	DetectMS      float64 `json:"detect_ms"`
	NodeToStateMS float64 `json:"node_to_state_ms"`
	AddToStateMS  float64 `json:"add_to_state_ms"`
	CPUPercent    float64 `json:"cpu_percent"`
	InRequest     bool    `json:"unplug_in_request"`
	Node          string  `json:"node"`
	// The replug's timeline: udev's chmod and by-id link, the bridge's first
	// open attempt, the port open, the link online, the state on MQTT.
	ChmodMS        float64 `json:"chmod_ms"`
	ByIDMS         float64 `json:"byid_ms"`
	FirstAttemptMS float64 `json:"first_attempt_ms"`
	OpenMS         float64 `json:"open_ms"`
	OnlineMS       float64 `json:"online_ms"`
	// OpenableMS is when the bridge's user could first open the node: at once
	// for root; for a dialout user udev's chmod (the kernel makes the node
	// 0600 root), or the bridge's open if the rig saw the chmod later.
	OpenableMS float64 `json:"openable_ms"`
	// The requests the simulator answered from device_add to the end of the
	// first complete snapshot (-1: none), and the state's excess over their
	// wire minimum (wireMinimum), from the node and from OpenableMS.
	Requests int `json:"requests"`
	wireFigures
	LatencyTimer int `json:"latency_timer"`
	Goroutines   int `json:"goroutines"`
	BaselineGors int `json:"baseline_goroutines"`
}

// wireFigures is a first state's excess over the wire minimum under both
// assumptions of the meter's latency: none (the simulator answers at once)
// and the adapter's measured round trip (Results.AdapterRoundTripMS), which
// is what a request costs through the emulated adapter however fast the
// program that sends it. -1 = not known.
type wireFigures struct {
	WireMinMS        float64 `json:"wire_min_ms"`          // 0 ms latency
	WireMinAdapterMS float64 `json:"wire_min_adapter_ms"`  // the adapter's round trip per request
	OverMS           float64 `json:"over_wire_ms"`         // from the node (a start: from exec), 0 ms latency
	OverAdapterMS    float64 `json:"over_wire_adapter_ms"` // the same with the adapter's latency
	// From when the node was openable (a start: from the bridge's first log
	// line), with the adapter's latency.
	OverLaterMS float64 `json:"over_wire_adapter_from_openable_ms"`
}

func unknownWire() wireFigures { return wireFigures{-1, -1, -1, -1, -1} }

// startRow is one bridge's start: ms from exec (guest clock), -1 = never.
type startRow struct {
	Kind       string  `json:"kind"`
	User       string  `json:"user"`
	StartingMS float64 `json:"starting_ms"` // its first log line: runtime up, configuration read
	OpenMS     float64 `json:"open_ms"`
	OnlineMS   float64 `json:"online_ms"`
	StateMS    float64 `json:"state_ms"`
	Requests   int     `json:"requests"` // up to the end of the first complete snapshot
	wireFigures
	LatencyTimer int `json:"latency_timer"`
}

// nearWire is issue 12's target: the first state within this much of the
// wire minimum of the requests that brought it. Reported, not asserted.
const nearWire = 100.0 // ms

// within counts how many known excesses over the wire minimum are ≤ nearWire.
type within struct{ n, of int }

func (w *within) add(over float64, known bool) {
	if !known {
		return
	}
	w.of++
	if over <= nearWire {
		w.n++
	}
}

func (w within) String() string { return fmt.Sprintf("%d of %d", w.n, w.of) }

// tally counts, per user, the rows within nearWire under each way of counting.
type tally struct{ zero, adapter, later map[string]*within }

func newTally() tally {
	m := func() map[string]*within { return map[string]*within{UserRoot: {}, UserDialout: {}} }
	return tally{m(), m(), m()}
}

func (t tally) add(user string, w wireFigures, laterKnown bool) {
	t.zero[user].add(w.OverMS, true)
	t.adapter[user].add(w.OverAdapterMS, true)
	t.later[user].add(w.OverLaterMS, laterKnown)
}

func (t tally) String() string {
	return fmt.Sprintf("0 ms latency: root %v, dialout %v; adapter latency: root %v, dialout %v; the same, from when it could begin: root %v, dialout %v",
		t.zero[UserRoot], t.zero[UserDialout], t.adapter[UserRoot], t.adapter[UserDialout], t.later[UserRoot], t.later[UserDialout])
}

func report(t *testing.T, res Results, bridges []Bridge, replugs *replugLog) {
	t.Helper()
	snapshot, err := meter.Plan(meter.Registers(), true, simMaxWords)
	must(t, err)
	adapterLatency := time.Duration(res.AdapterRoundTripMS * float64(time.Millisecond))
	// figures cuts reqs at the first complete snapshot and sets the excess of
	// a first state that came total ms after its start, and later ms after
	// the moment it could begin (later < 0: not known).
	figures := func(reqs []emsim.Request, total, later float64) (int, wireFigures, bool) {
		first, ok := reconnectRequests(reqs, snapshot)
		if !ok || total < 0 {
			return -1, unknownWire(), false
		}
		msOf := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		w := wireFigures{WireMinMS: msOf(wireMinimum(first, simLatency)), WireMinAdapterMS: msOf(wireMinimum(first, simLatency+adapterLatency)), OverLaterMS: -1}
		w.OverMS, w.OverAdapterMS = total-w.WireMinMS, total-w.WireMinAdapterMS
		if later >= 0 {
			w.OverLaterMS = w.OverAdapterMS - later
		}
		return len(first), w, true
	}
	adapter := map[string]int{}
	for _, b := range bridges {
		adapter[b.Name] = b.Adapter
	}
	t.Logf("adapter round trip beyond the wire (the rig's meter latency): median %.1f ms, worst %.1f ms of 20 requests",
		res.AdapterRoundTripMS, res.AdapterRoundTripWorstMS)

	var b strings.Builder
	var starts []startRow
	startTally := newTally()
	fmt.Fprintf(&b, "%-6s %-7s %8s %5s %6s %6s %4s %5s %5s %5s %6s %7s\n",
		"path", "user", "starting", "open", "online", "state", "reqs", "wire", "over0", "over", "over-s", "latency")
	for _, st := range res.Starts {
		row := startRow{Kind: st.Kind, User: st.User, StartingMS: st.StartingMS, OpenMS: st.OpenMS, OnlineMS: st.OnlineMS, StateMS: st.StateMS,
			Requests: -1, wireFigures: unknownWire(), LatencyTimer: st.LatencyTimer}
		if reqs, ok := replugs.start(adapter[st.Bridge]); ok {
			var known bool
			if row.Requests, row.wireFigures, known = figures(reqs, st.StateMS, st.StartingMS); known {
				startTally.add(st.User, row.wireFigures, st.StartingMS >= 0)
			}
		}
		starts = append(starts, row)
		fmt.Fprintf(&b, "%-6s %-7s %8.0f %5.0f %6.0f %6.0f %4d %5.0f %5.0f %5.0f %6.0f %7d\n",
			row.Kind, row.User, row.StartingMS, row.OpenMS, row.OnlineMS, row.StateMS, row.Requests,
			row.WireMinAdapterMS, row.OverMS, row.OverAdapterMS, row.OverLaterMS, row.LatencyTimer)
	}
	t.Logf("real-kernel start, one bridge at a time: ms from exec (guest clock; -1 = never): the bridge's first log line, port open, "+
		"link online, first state on MQTT; the requests answered up to the first complete snapshot and their wire minimum "+
		"(%d baud, 10 bits a byte, %v gap, the adapter's round trip as the meter's latency); the state's excess over it "+
		"with 0 ms latency (over0), with the adapter's (over), and that from the first log line (over-s); the FTDI latency timer after.\n"+
		"Within %.0f ms: %v:\n%s", rigBaud, meterGap, nearWire, startTally, b.String())

	// The k-th cycle of the plan is every adapter's k-th replug.
	ordinal := map[string]int{}
	for _, sc := range scenarios {
		for n := 1; n <= sc.Cycles; n++ {
			ordinal[fmt.Sprintf("%s#%d", sc.Name, n)] = len(ordinal)
		}
	}
	b.Reset()
	fmt.Fprintf(&b, "%-11s %1s %-6s %-7s %6s %5s %5s %5s %5s %6s %6s %6s %4s %5s %5s %5s %6s %5s %3s\n",
		"scenario", "#", "path", "user", "detect", "chmod", "by-id", "try", "open", "online", "state", "add→st",
		"reqs", "wire", "over0", "over", "over-u", "cpu%", "gor")
	var rows []reportRow
	replugTally := newTally()
	for _, c := range res.Cycles {
		row := reportRow{Scenario: c.Scenario, Cycle: c.Cycle, Kind: c.Kind, User: c.User, DetectMS: c.DetectMS,
			NodeToStateMS: c.NodeToStateMS, AddToStateMS: c.AddToStateMS, CPUPercent: c.CPUPercent, InRequest: c.InRequest, Node: c.Node,
			ChmodMS: c.ChmodMS, ByIDMS: c.ByIDMS, FirstAttemptMS: c.FirstAttemptMS, OpenMS: c.OpenMS, OnlineMS: c.OnlineMS,
			OpenableMS: -1, Requests: -1, wireFigures: unknownWire(), LatencyTimer: c.LatencyTimer,
			Goroutines: c.Goroutines, BaselineGors: res.BaselineGoroutines[c.Bridge]}
		switch {
		case c.User == UserRoot:
			row.OpenableMS = 0
		case c.ChmodMS >= 0 && c.OpenMS >= 0:
			row.OpenableMS = max(0, min(c.ChmodMS, c.OpenMS))
		case c.ChmodMS >= 0:
			row.OpenableMS = max(0, c.ChmodMS)
		}
		if reqs, ok := replugs.get(adapter[c.Bridge], ordinal[fmt.Sprintf("%s#%d", c.Scenario, c.Cycle)]); ok {
			var known bool
			if row.Requests, row.wireFigures, known = figures(reqs, c.NodeToStateMS, row.OpenableMS); known {
				replugTally.add(c.User, row.wireFigures, row.OpenableMS >= 0)
			}
		}
		rows = append(rows, row)
		fmt.Fprintf(&b, "%-11s %1d %-6s %-7s %6.0f %5.0f %5.0f %5.0f %5.0f %6.0f %6.0f %6.0f %4d %5.0f %5.0f %5.0f %6.0f %5.1f %3d\n",
			c.Scenario, c.Cycle, c.Kind, c.User, c.DetectMS, c.ChmodMS, c.ByIDMS, c.FirstAttemptMS, c.OpenMS, c.OnlineMS,
			c.NodeToStateMS, c.AddToStateMS, row.Requests, row.WireMinAdapterMS, row.OverMS, row.OverAdapterMS, row.OverLaterMS, c.CPUPercent, c.Goroutines)
	}
	t.Logf("real-kernel unplug: ms from the kernel creating the node (guest clock; -1 = never): udev's chmod "+
		"and by-id link, the bridge's first open attempt, port open, link online, first state on MQTT; "+
		"device_add → state; the requests answered up to the first complete snapshot and their wire minimum "+
		"(%d baud, 10 bits a byte, %v gap, the adapter's round trip as the meter's latency); the state's excess over it with 0 ms "+
		"latency (over0), with the adapter's (over), and that from when the bridge's user could open the node (over-u: udev's chmod "+
		"for dialout); CPU over the outage; goroutines after the cycle.\nWithin %.0f ms: %v:\n%s",
		rigBaud, meterGap, nearWire, replugTally, b.String())
	if path := os.Getenv("EM340_KERNELTEST_REPORT"); path != "" {
		out, err := json.MarshalIndent(map[string]any{
			"adapter_round_trip_ms": res.AdapterRoundTripMS, "adapter_round_trip_worst_ms": res.AdapterRoundTripWorstMS,
			"starts": starts, "rows": rows, "permission_denied": res.PermissionDenied}, "", "  ")
		must(t, err)
		must(t, os.WriteFile(path, out, 0o644))
	}
}

// serveGuest answers the guest's requests until it says "done": "del N"
// unplugs adapter N inside a Modbus request (the simulator is muted until the
// bridge's next request has arrived, then device_del), "add N" plugs it back.
func serveGuest(ctx context.Context, ctl net.Conn, qmp *qmpConn, adapters []Adapter, sims []*emsim.Sim, replugs *replugLog, exited <-chan error) error {
	var wmu sync.Mutex
	answer := func(s string) {
		wmu.Lock()
		defer wmu.Unlock()
		_, _ = ctl.Write([]byte(s + "\n"))
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(ctl)
		for sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		var line string
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-exited:
			return fmt.Errorf("qemu exited before the guest was done: %v", err)
		case l, ok := <-lines:
			if !ok {
				return errors.New("control channel closed before the guest was done")
			}
			line = l
		}
		verb, arg, _ := strings.Cut(line, " ")
		i, err := strconv.Atoi(arg)
		if (verb == "del" || verb == "add") && (err != nil || i < 0 || i >= len(sims)) {
			return fmt.Errorf("guest asked %q", line)
		}
		switch verb {
		case "done":
			for i, sim := range sims {
				replugs.unplugged(i, sim)
			}
			return nil
		case "del":
			replugs.unplugged(i, sims[i])
			wg.Add(1)
			go func() {
				defer wg.Done()
				inRequest := unplugInRequest(ctx, sims[i])
				err := qmp.Do(ctx, "device_del", map[string]any{"id": fmt.Sprintf("ser%d", i)})
				sims[i].Mute(false)
				if err != nil {
					answer(fmt.Sprintf("err del %d %v", i, err))
					return
				}
				answer(fmt.Sprintf("ok del %d %v", i, inRequest))
			}()
		case "add":
			a := adapters[i]
			args := map[string]any{"driver": "usb-serial", "id": fmt.Sprintf("ser%d", i), "bus": "xhci.0",
				"port": strconv.Itoa(i + 1), "chardev": fmt.Sprintf("c%d", i), "serial": a.USBSerial}
			replugs.plugged(i, sims[i])
			var err error
			for try := 0; try < 40; try++ { // the deleted device may still be finalising: Duplicate ID
				if err = qmp.Do(ctx, "device_add", args); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				answer(fmt.Sprintf("err add %d %v", i, err))
				continue
			}
			answer(fmt.Sprintf("ok add %d", i))
		}
	}
}

// unplugInRequest mutes the simulator and waits (up to 3 s) for the bridge's
// next request, so the device_del that follows lands while the bridge waits
// for the reply: the case that makes a naive read loop spin.
func unplugInRequest(ctx context.Context, sim *emsim.Sim) bool {
	sim.ResetRequests()
	sim.Mute(true)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if len(sim.Requests()) > 0 {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	for {
		c, err := net.Dial("unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial %s: %w", path, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// qmpConn is a QMP client: one command at a time; events are skipped.
type qmpConn struct {
	mu   sync.Mutex
	conn net.Conn
	dec  *json.Decoder
}

func dialQMP(ctx context.Context, path string) (*qmpConn, error) {
	c, err := dialUnix(ctx, path)
	if err != nil {
		return nil, err
	}
	q := &qmpConn{conn: c, dec: json.NewDecoder(c)}
	var greeting map[string]any
	if err := q.dec.Decode(&greeting); err != nil {
		c.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if err := q.Do(ctx, "qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmpConn) Close() error { return q.conn.Close() }

// Do runs one command and returns its error, if any.
func (q *qmpConn) Do(ctx context.Context, command string, args map[string]any) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	msg := map[string]any{"execute": command}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetDeadline(dl)
	}
	if _, err := q.conn.Write(b); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	for {
		var resp struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class, Desc string
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.dec.Decode(&resp); err != nil {
			return fmt.Errorf("qmp %s: %w", command, err)
		}
		switch {
		case resp.Error != nil:
			return fmt.Errorf("qmp %s: %s: %s", command, resp.Error.Class, resp.Error.Desc)
		case resp.Return != nil:
			return nil
		}
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
