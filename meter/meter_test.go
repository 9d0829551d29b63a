package meter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/simonvetter/modbus"
)

func typicalValues() map[string]float64 {
	vals := map[string]float64{}
	for _, r := range Registers() {
		switch r.Quantity {
		case Voltage:
			vals[r.Key] = 230.4
		case Current:
			vals[r.Key] = 4.321
		case ActivePower, ApparentPower, ReactivePower:
			vals[r.Key] = 987.6
		case PowerFactor:
			vals[r.Key] = 0.95
		case Frequency:
			vals[r.Key] = 50.1
		case ActiveEnergy, ReactiveEnergy:
			vals[r.Key] = 12345.678
		}
	}
	vals["voltage_ll"], vals["power"], vals["power_factor_l2"] = 399.1, -1234.5, -0.872
	return vals
}

func TestModelCodeIsReadAsASingleWord(t *testing.T) {
	f := newFixture(ModelEM340, true, typicalValues())
	id, err := readIdentity(context.Background(), f, "")
	if err != nil {
		t.Fatal(err)
	}
	if id.ModelCode != ModelEM340 || id.Model() != "EM340" {
		t.Fatalf("model %d %q; in a block 000Bh is the high word of V L3-L1", id.ModelCode, id.Model())
	}
	if f.requests[0] != (Block{AddrModelCode, 1}) {
		t.Fatalf("first request %v, want a single-word read of 000Bh", f.requests[0])
	}
}

func TestOlderMeterWithoutProductionYearOrMaxWords(t *testing.T) {
	f := newFixture(ModelEM340, false, typicalValues())
	delete(f.mem, AddrProductionYear)
	delete(f.mem, AddrMaxWords)
	id, err := readIdentity(context.Background(), f, "")
	if err != nil {
		t.Fatal(err)
	}
	if id.ProductionYear != 0 || id.MaxWords != MaxReadWords {
		t.Fatalf("identity %+v", id)
	}
}

func TestIdentityErrorsOtherThanMissingRegistersFail(t *testing.T) {
	f := newFixture(ModelEM340, true, typicalValues())
	m := New(Options{})
	f.maxWords = 0 // every read fails with exception 03
	if _, err := m.Connect(context.Background(), f); !errors.Is(err, modbus.ErrIllegalDataValue) {
		t.Fatalf("Connect err %v", err)
	}
}

func TestFineEnergyIsRedecidedAtReconnect(t *testing.T) {
	vals := typicalValues()
	f := newFixture(ModelEM340, true, vals)
	m := New(Options{})
	if _, err := m.Connect(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Read(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	// Same serial, yet without table 2.5 (which a real meter cannot lose): the
	// fast reconnect's plan meets exception 02 there, and the snapshot falls
	// back to the 0.1 kWh totals instead of failing for good.
	older := newFixture(ModelEM340, false, vals)
	if _, err := m.Connect(context.Background(), older); err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	reading, err := m.Read(context.Background(), older)
	if err != nil {
		t.Fatalf("snapshot after the fallback: %v", err)
	}
	if id := m.Identity(); id.FineEnergy || reading.Fine || len(m.Plan()) != 2 {
		t.Fatalf("identity %+v, plan %v after fallback", id, m.Plan())
	}
	if v, ok := reading.Get("energy_import"); !ok || v != 12345.7 {
		t.Fatalf("energy_import = %v (%v) after the fallback, want 12345.7", v, ok)
	}
}

func TestWrongMeter(t *testing.T) {
	f := newFixture(ModelEM340, true, typicalValues())
	m := New(Options{})
	if _, err := m.Connect(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	f.mem[AddrSerialNumber] = 'X'
	id, err := m.Connect(context.Background(), f)
	if !errors.Is(err, ErrWrongMeter) || id.Serial != "X35411W" {
		t.Fatalf("Connect = %+v, %v; want ErrWrongMeter", id, err)
	}
}

func TestShrinksBlocksOnException03(t *testing.T) {
	f := newFixture(ModelEM340, false, typicalValues())
	m := New(Options{})
	if _, err := m.Connect(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	f.maxWords = 20
	f.requests = nil
	if _, err := m.Read(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	reading, err := m.Read(context.Background(), f) // the totals confirmed
	if err != nil {
		t.Fatal(err)
	}
	if len(reading.Values) != len(Registers()) || m.Identity().MaxWords != 20 {
		t.Fatalf("%d values, max words %d", len(reading.Values), m.Identity().MaxWords)
	}
	f.requests = nil
	if _, err := m.Read(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if len(f.requests) != 5 {
		t.Fatalf("next snapshot took %d requests (%v), want 5 with 20-register reads", len(f.requests), f.requests)
	}
}

func TestRejectedValuesAreLoggedCountedAndLeftOut(t *testing.T) {
	vals := typicalValues()
	f := newFixture(ModelEM340, true, vals)
	var log bytes.Buffer
	m := New(Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	ctx := context.Background()
	if _, err := m.Connect(ctx, f); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second read confirms the totals
		if _, err := m.Read(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	imp, volt := register("energy_import"), register("voltage_l2_n")
	f.setFine(imp, 0, false) // glitch: the total reads 0
	f.mem[volt.Addr], f.mem[volt.Addr+1] = 0xFFFF, 0x7FFF
	reading, err := m.Read(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"energy_import", "voltage_l2_n"} {
		if v, ok := reading.Get(key); ok {
			t.Errorf("%s = %v published; it was a glitch", key, v)
		}
	}
	if _, ok := reading.Get("energy_export"); !ok {
		t.Error("good values were dropped with the bad ones")
	}
	if m.Rejected() != 2 {
		t.Errorf("Rejected = %d, want 2", m.Rejected())
	}
	for _, want := range []string{"key=energy_import", `raw="0000 0000 0000 0000"`, "key=voltage_l2_n", `raw="FFFF 7FFF"`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, log.String())
		}
	}
}

func TestAllZeroSnapshotIsRejected(t *testing.T) {
	f := newFixture(ModelEM340, false, map[string]float64{})
	m := New(Options{})
	if _, err := m.Connect(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Read(context.Background(), f); !errors.Is(err, ErrAllZero) {
		t.Fatalf("err %v, want ErrAllZero", err)
	}
}

func TestReadErrorsPublishNothing(t *testing.T) {
	f := newFixture(ModelEM340, true, typicalValues())
	m := New(Options{})
	if _, err := m.Read(context.Background(), f); err == nil {
		t.Fatal("Read before Connect succeeded")
	}
	if _, err := m.Connect(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	f.fail = modbus.ErrRequestTimedOut
	r, err := m.Read(context.Background(), f)
	if !errors.Is(err, modbus.ErrRequestTimedOut) || len(r.Values) != 0 {
		t.Fatalf("Read = %d values, %v", len(r.Values), err)
	}
}
