package kerneltest

// Plan is what the host tells the guest, as plan.json on the 9p share.
type Plan struct {
	Adapters  []Adapter  `json:"adapters"`
	Bridges   []Bridge   `json:"bridges"`
	Scenarios []Scenario `json:"scenarios"`
	Env       []string   `json:"env"` // EM340_* settings common to every bridge
}

// Adapter is one emulated FTDI adapter: QMP id ser<Index>, root-hub port Index+1.
type Adapter struct {
	Index     int    `json:"index"`
	USBSerial string `json:"usb_serial"` // the adapter's USB serial number (by-id, usb:…:SERIAL)
	MeterID   string `json:"meter_id"`   // the simulated meter's serial = device id in topics
}

// Path kinds a bridge is configured with.
const (
	KindFixed = "ttyUSB" // /dev/ttyUSBn as enumerated at boot
	KindByID  = "by-id"  // /dev/serial/by-id/…
	KindUSB   = "usb"    // usb:0403:6001:SERIAL
)

// Users a bridge runs as.
const (
	UserRoot    = "root"
	UserDialout = "dialout" // uid 1000, supplementary group dialout (20)
)

// Bridge is one em340-bridge process in the guest, on its own adapter.
type Bridge struct {
	Name    string `json:"name"` // also its base topic under kt/
	Kind    string `json:"kind"`
	User    string `json:"user"`
	Adapter int    `json:"adapter"`
}

// Scenario is a kind of outage, applied to every adapter at once.
type Scenario struct {
	Name     string `json:"name"`
	OutageMS int    `json:"outage_ms"`
	Cycles   int    `json:"cycles"`
	// HoldOldFD keeps the old node open in another process across the replug,
	// so the adapter comes back under a new ttyUSB number.
	HoldOldFD bool `json:"hold_old_fd"`
}

// Results is what the guest writes back, as results.json on the share.
type Results struct {
	Starts []Start `json:"starts"` // in the order the bridges were started, one at a time
	Cycles []Cycle `json:"cycles"`
	// PermissionDenied lists every link message with cause "permission denied",
	// "bridge: payload".
	PermissionDenied []string       `json:"permission_denied"`
	BaselineFDs      map[string]int `json:"baseline_fds"`
	BaselineThreads  map[string]int `json:"baseline_threads"`
	// BaselineGoroutines is each bridge's goroutine count (from its status
	// file) in steady state before the first cycle.
	BaselineGoroutines map[string]int `json:"baseline_goroutines"`
	// AdapterRoundTripMS is what one request took through an emulated
	// adapter beyond its bytes on the wire (median, worst of 20), measured
	// at the end of the run with that adapter's bridge stopped.
	AdapterRoundTripMS      float64 `json:"adapter_round_trip_ms"`
	AdapterRoundTripWorstMS float64 `json:"adapter_round_trip_worst_ms"`
	Error                   string  `json:"error,omitempty"`
}

// Cycle is one bridge's view of one unplug/replug cycle. Durations are
// milliseconds measured on the guest's clock; -1 = did not happen.
type Cycle struct {
	Scenario string `json:"scenario"`
	Cycle    int    `json:"cycle"`
	Bridge   string `json:"bridge"`
	Kind     string `json:"kind"`
	User     string `json:"user"`
	// ExpectRecovery is false where the path cannot come back (a fixed
	// /dev/ttyUSBn while the old node is held).
	ExpectRecovery bool    `json:"expect_recovery"`
	InRequest      bool    `json:"in_request"`    // the unplug landed inside a Modbus request
	DetectMS       float64 `json:"detect_ms"`     // device_del → link not online on MQTT
	NodeToStateMS  float64 `json:"node_state_ms"` // kernel creates the node → first state on MQTT
	AddToStateMS   float64 `json:"add_state_ms"`  // device_add → first state on MQTT
	OutageMS       float64 `json:"outage_ms"`     // device_del → device_add
	OfflineMS      float64 `json:"offline_ms"`    // device_del → link "offline" (EM340_OFFLINE_AFTER)
	CPUPercent     float64 `json:"cpu_percent"`   // of one core, from device_del to the cycle's first device_add
	CPUWindowMS    float64 `json:"cpu_window_ms"` // the span CPUPercent covers
	Node           string  `json:"node"`          // the node the kernel created on replug
	FDs            int     `json:"fds"`           // open fds after the cycle
	Threads        int     `json:"threads"`       // OS threads after the cycle
	Goroutines     int     `json:"goroutines"`    // goroutines after the cycle (the bridge's status file); -1 unknown
	// The timeline of the replug, from the kernel creating the node, in ms on
	// the guest clock (-1 = not seen): udev making the node group dialout,
	// udev's by-id link appearing (renamed into place), the bridge's first
	// open attempt, the port opened, and the link online (identity proven).
	ChmodMS        float64 `json:"chmod_ms"`
	ByIDMS         float64 `json:"byid_ms"`
	FirstAttemptMS float64 `json:"first_attempt_ms"`
	OpenMS         float64 `json:"open_ms"`
	OnlineMS       float64 `json:"online_ms"`
	LastLink       string  `json:"last_link"` // last link payload at the end of the cycle
	// LatencyTimer is the FTDI latency timer (ms, from sysfs) of the node the
	// kernel created, at the end of the cycle; -1 = unreadable.
	LatencyTimer int `json:"latency_timer"`
}

// Start is one bridge's start, in ms on the guest's clock from the moment
// before exec (-1 = not seen): its first log line (the Go runtime up, the
// configuration read), the port open and the link online (from its log), the
// first state at the subscriber.
type Start struct {
	Bridge     string  `json:"bridge"`
	Kind       string  `json:"kind"`
	User       string  `json:"user"`
	StartingMS float64 `json:"starting_ms"`
	OpenMS     float64 `json:"open_ms"`
	OnlineMS   float64 `json:"online_ms"`
	StateMS    float64 `json:"state_ms"`
	// LatencyTimer is the adapter's FTDI latency timer (ms, from sysfs) once
	// the state has come; -1 = unreadable.
	LatencyTimer int `json:"latency_timer"`
}
