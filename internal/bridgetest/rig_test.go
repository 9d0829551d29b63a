package bridgetest_test

import (
	"context"
	"io"
	"log"
	"os"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/bridgetest"
	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/hass"
	"github.com/em340-bridge/em340-bridge/link"
	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// TestMain quiets the serial library, which logs through the standard logger
// when it closes a port.
func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// TestRig: the rig's bridge comes online and publishes, the rig records the
// link and the readings, StopBridge ends Run cleanly and a second start
// works; Close then leaves nothing behind.
func TestRig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	r, err := bridgetest.Start(ctx, bridgetest.Options{Broker: brokertest.Start(t), Sim: emsim.Options{FineEnergy: true},
		Env: []string{"EM340_SERIAL_BAUD=115200", "EM340_POLL_INTERVAL=500ms"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}()
	if _, err := r.HA.Await(ctx, 0, hass.On(r.Topics.MeterState(), nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitLink(ctx, start, link.Online); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WaitReading(ctx, start); err != nil {
		t.Fatal(err)
	}
	if st := r.LastLink(); st.State != link.Online {
		t.Errorf("last link status %+v", st)
	}
	if err := r.StopBridge(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	select {
	case <-r.Exited():
	default:
		t.Fatal("Exited not closed after StopBridge")
	}
	mark := r.HA.Mark()
	r.StartBridge()
	if _, err := r.HA.Await(ctx, mark, hass.On(r.Topics.MeterState(), nil)); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}
