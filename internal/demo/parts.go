package demo

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/config"
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

// startMeter plugs a simulated EM340 in at dir/ttyUSB0: a 2021 meter with the
// 3-decimal energy totals, in measurement mode B (import and export), that
// answers no faster than a real one at 9600 baud.
func startMeter(dir string, log *slog.Logger) (*emsim.Sim, error) {
	sim := emsim.New(emsim.Options{Serial: meterSerial, FirmwareVersion: 1, FineEnergy: true, ProductionYear: 2021,
		MeasurementMode: meter.MeasurementModeB, WireTiming: true, Baud: baud, TimeScale: sunSpeed,
		Logger: log.With("component", "simulator")})
	if err := sim.Start(filepath.Join(dir, "ttyUSB0")); err != nil {
		return nil, fmt.Errorf("simulated meter: %w", err)
	}
	return sim, nil
}

// bridgeConfig is the bridge's configuration, made the way a user makes it:
// from EM340_* variables.
func bridgeConfig(device, brokerURL, dir string, poll time.Duration) (config.Config, error) {
	cfg, err := config.Load([]string{
		"EM340_SERIAL_DEVICE=" + device,
		fmt.Sprintf("EM340_SERIAL_BAUD=%d", baud),
		"EM340_MODBUS_TIMEOUT=650ms",
		"EM340_POLL_INTERVAL=" + poll.String(),
		"EM340_MQTT_URL=" + brokerURL,
		"EM340_RECONNECT_MIN_DELAY=" + reconnectMinDelay.String(),
		"EM340_RECONNECT_MAX_DELAY=" + reconnectMaxDelay.String(),
		fmt.Sprintf("EM340_RECONNECT_FACTOR=%g", reconnectFactor),
		"EM340_OFFLINE_AFTER=" + offlineAfter.String(),
		"EM340_STATUS_FILE=" + filepath.Join(dir, "status"),
		"EM340_STALL_TIMEOUT=" + (max(poll, reconnectMaxDelay) + time.Minute).String(),
	})
	if err != nil {
		return config.Config{}, fmt.Errorf("bridge configuration: %w", err)
	}
	return cfg, nil
}

// tempDir is where the simulated adapter and the bridge's status file live.
func tempDir() (string, error) {
	dir, err := os.MkdirTemp("", "em340-demo-")
	if err != nil {
		return "", fmt.Errorf("temporary directory: %w", err)
	}
	return dir, nil
}
