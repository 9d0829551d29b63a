package emsim

import (
	"errors"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/simonvetter/modbus"
)

// Frames the client cannot send, written to the port by hand.
func TestRawFrames(t *testing.T) {
	_, path := startSim(t, Options{Static: true})
	p := openRaw(t, path)
	readV1 := frame(0x01, 0x03, 0x00, 0x00, 0x00, 0x01)
	replyV1 := frame(0x01, 0x03, 0x02, 0x08, 0xFC) // 2300 = 230.0 V
	tests := []struct {
		name  string
		send  [][]byte
		reply []byte // nil: no reply
	}{
		{"08 loopback echoes", [][]byte{frame(0x01, 0x08, 0x00, 0x00, 0xA5, 0x37)}, frame(0x01, 0x08, 0x00, 0x00, 0xA5, 0x37)},
		{"08 other sub-function", [][]byte{frame(0x01, 0x08, 0x00, 0x0A, 0x00, 0x00)}, frame(0x01, 0x88, 0x01)},
		{"unknown function, known length", [][]byte{frame(0x01, 0x11)}, frame(0x01, 0x91, 0x01)},
		{"unknown function, length by silence", [][]byte{frame(0x01, 0x2B, 0x0E, 0x01, 0x00)}, frame(0x01, 0xAB, 0x01)},
		{"write multiple is not supported", [][]byte{frame(0x01, 0x10, 0x11, 0x03, 0x00, 0x01, 0x02, 0x00, 0x01)}, frame(0x01, 0x90, 0x01)},
		{"quantity 0", [][]byte{frame(0x01, 0x03, 0x00, 0x00, 0x00, 0x00)}, frame(0x01, 0x83, 0x03)},
		{"function 04 with quantity 0", [][]byte{frame(0x01, 0x04, 0x00, 0x00, 0x00, 0x00)}, frame(0x01, 0x84, 0x03)},
		{"delivered in chunks", [][]byte{readV1[:2], readV1[2:5], readV1[5:]}, replyV1},
		{"noise before a request", [][]byte{append([]byte{0xFF, 0x03, 0x42}, readV1...)}, replyV1},
		{"another slave id", [][]byte{frame(0x02, 0x03, 0x00, 0x00, 0x00, 0x01)}, nil},
		{"bad CRC", [][]byte{append(readV1[:6:6], 0x00, 0x00)}, nil},
		{"broadcast read", [][]byte{frame(0x00, 0x03, 0x00, 0x00, 0x00, 0x01)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.t = t
			p.send(tt.send...)
			if tt.reply == nil {
				p.expectSilence(100 * time.Millisecond)
				p.send(readV1) // and the meter still answers afterwards
				p.expect(replyV1)
				return
			}
			p.expect(tt.reply)
		})
	}
}

func TestBroadcastWrite(t *testing.T) {
	s, path := startSim(t, Options{Static: true})
	p := openRaw(t, path)
	p.send(frame(0x00, 0x06, 0x11, 0x03, 0x00, 0x01)) // mode B to everyone
	p.expectSilence(100 * time.Millisecond)
	p.send(frame(0x01, 0x03, 0x11, 0x03, 0x00, 0x01))
	p.expect(frame(0x01, 0x03, 0x02, 0x00, 0x01))
	if r := s.Requests(); len(r) != 2 || r[0].Outcome != OutcomeBroadcast || r[0].Answered() {
		t.Fatalf("log %+v", r)
	}
}

func TestWriteSingleRegister(t *testing.T) {
	s, path := startSim(t, Options{Static: true, FineEnergy: true})
	c := dial(t, path, testTimeout)
	tests := []struct {
		name       string
		addr, v    uint16
		want       error
		readBack   uint16 // checked when want is nil and the address is readable
		unreadable bool
	}{
		{"measurement mode B", meter.AddrMeasurementMode, 1, nil, 1, false},
		{"measurement mode 2", meter.AddrMeasurementMode, 2, modbus.ErrIllegalDataValue, 0, false},
		{"measuring system", meter.AddrMeasuringSystem, 1, nil, 1, false},
		{"measuring system 3 is EM330 only", meter.AddrMeasuringSystem, 3, modbus.ErrIllegalDataValue, 0, false},
		{"wrong-connection help", 0x1104, 1, nil, 1, false},
		{"wrong-connection status is read-only", meter.AddrWrongConnection, 0, modbus.ErrIllegalDataAddress, 0, false},
		{"max words is read-only", meter.AddrMaxWords, 20, modbus.ErrIllegalDataAddress, 0, false},
		{"a value is read-only", 0x0000, 1, modbus.ErrIllegalDataAddress, 0, false},
		{"password", 0x1000, 1234, nil, 1234, false},
		{"CT ratio low word", 0x1003, 50, nil, 50, false},
		{"CT ratio out of range", 0x1004, 1, modbus.ErrIllegalDataValue, 0, false},
		{"baud code", 0x2001, 5, nil, 5, false},
		{"parity", 0x2002, 3, modbus.ErrIllegalDataValue, 0, false},
		{"stop bits", 0x2003, 2, nil, 2, false},
		{"reset command needs 1", 0x4000, 2, modbus.ErrIllegalDataValue, 0, true},
	}
	for _, tt := range tests {
		err := c.WriteRegister(tt.addr, tt.v)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: write %04Xh=%d: %v, want %v", tt.name, tt.addr, tt.v, err, tt.want)
			continue
		}
		if tt.want == nil && !tt.unreadable {
			if got := mustRead(t, c, tt.addr, 1); got[0] != tt.readBack {
				t.Errorf("%s: reads back %d, want %d", tt.name, got[0], tt.readBack)
			}
		}
	}

	// 4000h resets partial and tariff counters and the demand peak; 4001h every total.
	if err := c.WriteRegister(0x4000, 1); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"energy_import_partial", "reactive_energy_import_partial", "energy_import_tariff_1", "energy_import_tariff_2"} {
		if v := s.Value(key); v != 0 {
			t.Errorf("after 4000h %s = %v", key, v)
		}
	}
	if s.Value("power_demand_peak") != s.Value("power_demand") || s.Value("energy_import") == 0 {
		t.Errorf("after 4000h: peak %v demand %v import %v", s.Value("power_demand_peak"), s.Value("power_demand"), s.Value("energy_import"))
	}
	if err := c.WriteRegister(0x4001, 1); err != nil {
		t.Fatal(err)
	}
	for _, r := range meter.Registers() {
		if r.Total && (s.Value(r.Key) != 0 || (r.FineAddr != 0 && s.FineValue(r.Key) != 0)) {
			t.Errorf("after 4001h %s = %v", r.Key, s.Value(r.Key))
		}
	}
}

func TestSlaveAddress(t *testing.T) {
	s, path := startSim(t, Options{Address: 7, Static: true})
	c := dial(t, path, 100*time.Millisecond)
	if _, err := c.ReadRegisters(0, 1, modbus.HOLDING_REGISTER); !errors.Is(err, modbus.ErrRequestTimedOut) {
		t.Fatalf("read at id 1 from a meter at 7: %v", err)
	}
	if err := c.SetUnitId(7); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRegister(0x2000, 9); err != nil { // the reply comes from 7
		t.Fatalf("change address: %v", err)
	}
	if _, err := c.ReadRegisters(0, 1, modbus.HOLDING_REGISTER); !errors.Is(err, modbus.ErrRequestTimedOut) {
		t.Fatalf("read at the old id: %v", err)
	}
	_ = c.SetUnitId(9)
	if got := mustRead(t, c, 0x2000, 1); got[0] != 9 {
		t.Fatalf("2000h reads %d", got[0])
	}
	var other int
	for _, r := range s.Requests() {
		if r.Outcome == OutcomeOtherSlave {
			other++
		}
	}
	if other != 2 {
		t.Fatalf("%d requests logged for another slave, want 2", other)
	}
}

func TestSetWord(t *testing.T) {
	s, path := startSim(t, Options{Static: true})
	c := dial(t, path, testTimeout)
	if err := s.SetWord(meter.AddrWrongConnection, 0x21); err != nil {
		t.Fatal(err)
	}
	s.SetSerial("999999Z")
	if got := mustRead(t, c, meter.AddrWrongConnection, 1); got[0] != 0x21 {
		t.Fatalf("1105h = %X", got[0])
	}
	if got := mustRead(t, c, meter.AddrSerialNumber+6, 1); got[0] != 'Z' {
		t.Fatalf("last serial character %q", rune(got[0]))
	}
	if err := s.SetWord(0x0000, 1); err == nil {
		t.Fatal("SetWord on a value register should fail")
	}
}
