package demo

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// The demo's meter and the bridge's settings for it.
const (
	meterSerial = "235411W"
	baud        = 9600
	// sunSpeed makes the simulated day go faster, so the solar export (and
	// power going negative) shows within a minute rather than in 20.
	sunSpeed          = 30
	reconnectMinDelay = time.Second
	reconnectMaxDelay = 5 * time.Second
	reconnectFactor   = 1.5
	offlineAfter      = 15 * time.Second
)

// meterOptions are a simulated EM340: a 2021 meter with the 3-decimal energy
// totals, in measurement mode B (import and export), that answers no faster
// than a real one at 9600 baud.
func meterOptions(log *slog.Logger) emsim.Options {
	return emsim.Options{Serial: meterSerial, FirmwareVersion: 1, FineEnergy: true, ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB, WireTiming: true, Baud: baud, TimeScale: sunSpeed,
		Logger: log.With("component", "simulator")}
}

// bridgeEnv is the bridge's configuration, as a user writes it: EM340_*
// variables (the device, the broker and the status file are the rig's).
func bridgeEnv(poll time.Duration) []string {
	return []string{
		fmt.Sprintf("EM340_SERIAL_BAUD=%d", baud),
		"EM340_MODBUS_TIMEOUT=650ms",
		"EM340_POLL_INTERVAL=" + poll.String(),
		"EM340_RECONNECT_MIN_DELAY=" + reconnectMinDelay.String(),
		"EM340_RECONNECT_MAX_DELAY=" + reconnectMaxDelay.String(),
		fmt.Sprintf("EM340_RECONNECT_FACTOR=%g", reconnectFactor),
		"EM340_OFFLINE_AFTER=" + offlineAfter.String(),
		"EM340_STALL_TIMEOUT=" + (max(poll, reconnectMaxDelay) + time.Minute).String(),
	}
}
