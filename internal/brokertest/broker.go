// Package brokertest runs a real Mosquitto broker for tests and benchmarks on a
// free loopback port, and puts Home Assistant's subscriber (hass.Subscriber) on it.
package brokertest

import (
	"errors"
	"testing"

	"github.com/em340-bridge/em340-bridge/internal/testenv"
)

// Broker is a Process owned by a test: it fails the test instead of returning
// errors, and is closed when the test ends.
type Broker struct {
	*Process
	t testing.TB
}

// Start runs mosquitto for the test.
func Start(t testing.TB) *Broker {
	t.Helper()
	return start(t, false)
}

// StartTLS is Start with a second listener that speaks TLS (TLSURL, CAFile).
// The plain listener stays for subscribers.
func StartTLS(t testing.TB) *Broker {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, withTLS bool) *Broker {
	t.Helper()
	p, err := StartProcess(withTLS)
	if errors.Is(err, ErrNoMosquitto) {
		testenv.Missing(t, "mosquitto", "apt-get install -y mosquitto")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return &Broker{Process: p, t: t}
}

// Stop kills the broker, as a crash or a restart would; safe to call twice.
func (b *Broker) Stop() {
	if err := b.Kill(); err != nil {
		b.t.Error(err)
	}
}

// Restart stops the broker (if running) and starts a new one on the same port.
func (b *Broker) Restart() {
	b.t.Helper()
	if err := b.Process.Restart(); err != nil {
		b.t.Fatal(err)
	}
}
