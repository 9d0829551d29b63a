package main

import (
	"errors"
	"io"
	"log"
	"os"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/brokertest"
	"github.com/em340-bridge/em340-bridge/internal/testenv"
)

// TestMain quiets simonvetter/modbus, which logs "could not restore setting"
// through the standard logger at every close of a hung-up port.
func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

// needMosquitto fails the test (or skips it, with EM340_ALLOW_MISSING=1) when
// mosquitto is not installed.
func needMosquitto(t *testing.T) {
	p, err := brokertest.StartProcess(false)
	if errors.Is(err, brokertest.ErrNoMosquitto) {
		testenv.Missing(t, "mosquitto", "apt-get install -y mosquitto")
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSummarize(t *testing.T) {
	s := Summarize([]time.Duration{3, 1, 2, 10})
	if s.N != 4 || s.Min != 1 || s.Median != 2 || s.Max != 10 || s.Mean != 4 {
		t.Fatalf("%+v", s)
	}
	if (Summarize(nil) != Summary{}) {
		t.Fatal("empty sample")
	}
}
