package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"
)

// ErrStalled is returned by Run when one of the bridge's loops stops making
// progress: exiting lets the container's restart policy do what Docker's
// health status alone never does.
var ErrStalled = errors.New("bridge loop stalled")

// HealthStatus is what the running bridge writes to its status file after every
// publisher tick, for `em340-bridge healthcheck` in another process to read.
type HealthStatus struct {
	PID           int       `json:"pid"`
	Updated       time.Time `json:"updated"`
	MQTTConnected bool      `json:"mqtt_connected"`
	MQTTSince     time.Time `json:"mqtt_since"` // when the broker connection last went up or down
	// MQTTRefusal is, while the broker is down, why the last attempt failed
	// and what to do (a refused login, say), so the health check can say it.
	MQTTRefusal string    `json:"mqtt_refusal,omitempty"`
	Link        string    `json:"link"` // online, reconnecting, offline
	LastPoll    time.Time `json:"last_poll"`
	// StallTimeout travels with the status: in the add-on the settings exist
	// only in the bridge's environment, not in the health check's.
	StallTimeout time.Duration `json:"stall_timeout_ns"`
	// Goroutines is how many goroutines the process had when the status was
	// written (writeStatus fills it in): a test rig watches it for leaks
	// across outages without reaching into the process.
	Goroutines int `json:"goroutines"`
}

// writeStatus replaces the file atomically, so a reader never sees half of it.
func writeStatus(path string, st HealthStatus) error {
	st.Goroutines = runtime.NumGoroutine()
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".em340-status-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// CheckHealth judges the bridge from its status file, with the bridge's own
// stall limit when the file has one (else stall). It is unhealthy when the
// file is missing or older than the limit (the process is stuck or gone), or when
// the broker has been unreachable for longer than stall. A serial link that is
// reconnecting is healthy: restarting the container brings no adapter back,
// and the bridge recovers by itself.
func CheckHealth(path string, stall time.Duration, now time.Time) (HealthStatus, error) {
	var st HealthStatus
	data, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("no status from the bridge: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("status file %s is unreadable: %w", path, err)
	}
	if st.StallTimeout > 0 {
		stall = st.StallTimeout
	}
	if age := now.Sub(st.Updated); age > stall {
		return st, fmt.Errorf("the bridge last reported %s ago (limit %s): it is stuck or not running", age.Round(time.Second), stall)
	}
	if down := now.Sub(st.MQTTSince); !st.MQTTConnected && down > stall {
		err := fmt.Errorf("the MQTT broker has been unreachable for %s (limit %s)", down.Round(time.Second), stall)
		if st.MQTTRefusal != "" {
			err = fmt.Errorf("%w: %s", err, st.MQTTRefusal)
		}
		return st, err
	}
	return st, nil
}

// heartbeat is a loop's proof of life for the watchdog.
type heartbeat struct {
	name string
	last atomic.Int64 // unix nanoseconds
}

func (h *heartbeat) beat() { h.last.Store(time.Now().UnixNano()) }

func (h *heartbeat) age(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, h.last.Load()))
}

// stalled returns an error naming the first loop that has not beaten within limit.
func stalled(now time.Time, limit time.Duration, loops ...*heartbeat) error {
	for _, h := range loops {
		if age := h.age(now); age > limit {
			return fmt.Errorf("%s loop: no progress for %s (limit %s): %w", h.name, age.Round(time.Millisecond), limit, ErrStalled)
		}
	}
	return nil
}
