package emsim

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter"
	"github.com/simonvetter/modbus"
)

const (
	testSpeed   = 115200 // the client sleeps the computed wire time even on a pty
	testTimeout = 300 * time.Millisecond
)

// startSim starts a simulator at a fresh path and closes it when the test ends.
func startSim(t *testing.T, opts Options) (*Sim, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ttyUSB0")
	s := New(opts)
	if err := s.Start(path); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return s, path
}

// dial opens a simonvetter RTU client on path; it is closed when the test ends
// (before the simulator, as cleanups run last-in first-out).
func dial(t *testing.T, path string, timeout time.Duration) *modbus.ModbusClient {
	t.Helper()
	c, err := openClient(path, timeout)
	if err != nil {
		t.Fatalf("open client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func openClient(path string, timeout time.Duration) (*modbus.ModbusClient, error) {
	c, err := modbus.NewClient(&modbus.ClientConfiguration{
		URL: "rtu://" + path, Speed: testSpeed, Timeout: timeout,
		Logger: log.New(io.Discard, "", 0),
	})
	if err != nil {
		return nil, err
	}
	if err := c.Open(); err != nil {
		return nil, err
	}
	return c, nil
}

func mustRead(t *testing.T, c *modbus.ModbusClient, addr, qty uint16) []uint16 {
	t.Helper()
	w, err := c.ReadRegisters(addr, qty, modbus.HOLDING_REGISTER)
	if err != nil {
		t.Fatalf("read %04Xh+%d: %v", addr, qty, err)
	}
	return w
}

// image reads the whole snapshot area 0000h–0051h as the bridge would: two reads.
func image(t *testing.T, c *modbus.ModbusClient) map[uint16]uint16 {
	t.Helper()
	img := map[uint16]uint16{}
	for _, b := range [][2]uint16{{0x0000, 50}, {0x0032, 32}} {
		for i, w := range mustRead(t, c, b[0], b[1]) {
			img[b[0]+uint16(i)] = w
		}
	}
	return img
}

// decodeRaw is the test's own decoder: LSW first, MSW first on model 340.
func decodeRaw(f meter.Format, words []uint16, msw bool) int64 {
	switch f {
	case meter.Int16:
		return int64(int16(words[0]))
	case meter.UInt16:
		return int64(words[0])
	}
	lo, hi := words[0], words[1]
	if msw {
		lo, hi = hi, lo
	}
	u := uint32(hi)<<16 | uint32(lo)
	if f == meter.Int32 {
		return int64(int32(u))
	}
	return int64(u)
}

func decodeAt(img map[uint16]uint16, r meter.Register, msw bool) float64 {
	words := []uint16{img[r.Addr], img[r.Addr+1]}
	return float64(decodeRaw(r.Format, words, msw)) / r.Divisor
}

func decodeFine(words []uint16, msw bool) float64 {
	return float64(decodeRaw(meter.Int32, words[:2], msw)) + float64(decodeRaw(meter.Int32, words[2:4], msw))/1000
}

func register(t *testing.T, key string) meter.Register {
	t.Helper()
	return registerWhere(t, "key "+key, func(r meter.Register) bool { return r.Key == key })
}

// registerAt is the value of meter's table at addr.
func registerAt(t *testing.T, addr uint16) meter.Register {
	t.Helper()
	return registerWhere(t, fmt.Sprintf("address %04Xh", addr), func(r meter.Register) bool { return r.Addr == addr })
}

func registerWhere(t *testing.T, what string, match func(meter.Register) bool) meter.Register {
	t.Helper()
	i := slices.IndexFunc(meter.Registers(), match)
	if i < 0 {
		t.Fatalf("no register with %s in meter's table", what)
	}
	return meter.Registers()[i]
}

// rawPort is the slave side opened directly, for frames the client cannot send.
type rawPort struct {
	t *testing.T
	f *os.File
}

func openRaw(t *testing.T, path string) *rawPort {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return &rawPort{t: t, f: f}
}

func (p *rawPort) send(chunks ...[]byte) {
	p.t.Helper()
	for i, c := range chunks {
		if i > 0 {
			time.Sleep(3 * time.Millisecond) // well inside the frame gap
		}
		if _, err := p.f.Write(c); err != nil {
			p.t.Fatalf("write: %v", err)
		}
	}
}

// expect reads exactly len(want) bytes and compares.
func (p *rawPort) expect(want []byte) {
	p.t.Helper()
	got := make([]byte, len(want))
	_ = p.f.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := io.ReadFull(p.f, got); err != nil {
		p.t.Fatalf("read reply: %v (got % X, want % X)", err, got, want)
	}
	if string(got) != string(want) {
		p.t.Fatalf("reply % X, want % X", got, want)
	}
}

// expectSilence asserts that nothing arrives within d.
func (p *rawPort) expectSilence(d time.Duration) {
	p.t.Helper()
	buf := make([]byte, 64)
	_ = p.f.SetReadDeadline(time.Now().Add(d))
	n, err := p.f.Read(buf)
	if n > 0 {
		p.t.Fatalf("expected no reply, got % X", buf[:n])
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		p.t.Fatalf("expected a timeout, got %v", err)
	}
}

func frame(b ...byte) []byte { return appendCRC(b) }

// waitFor polls cond until it holds or the time is up.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("list fds: %v", err)
	}
	return len(ents)
}

func goroutines() int { return runtime.NumGoroutine() }

// replyFrame reads one reply the way a Modbus master does: address, function
// and byte count (or exception code) first, then as many bytes as they say,
// and checks the CRC.
func (p *rawPort) replyFrame() []byte {
	p.t.Helper()
	_ = p.f.SetReadDeadline(time.Now().Add(2 * time.Second))
	head := make([]byte, 3)
	if _, err := io.ReadFull(p.f, head); err != nil {
		p.t.Fatalf("read reply header: %v (% X)", err, head)
	}
	rest := 2 // an exception: just the CRC after the code
	if head[1]&0x80 == 0 {
		rest += int(head[2])
	}
	f := append(head, make([]byte, rest)...)
	if _, err := io.ReadFull(p.f, f[3:]); err != nil {
		p.t.Fatalf("read reply body: %v (% X)", err, f)
	}
	if !crcOK(f) {
		p.t.Fatalf("reply % X: bad CRC", f)
	}
	return f
}

// readRequest is a function-03 request frame for slave 1.
func readRequest(addr, qty uint16) []byte {
	return frame(0x01, 0x03, byte(addr>>8), byte(addr), byte(qty>>8), byte(qty))
}

// words are the registers of a well-formed read reply.
func words(t *testing.T, reply []byte) []uint16 {
	t.Helper()
	if reply[1]&0x80 != 0 {
		t.Fatalf("exception reply % X", reply)
	}
	w := make([]uint16, reply[2]/2)
	for i := range w {
		w[i] = uint16(reply[3+2*i])<<8 | uint16(reply[4+2*i])
	}
	return w
}

// readWords sends a read and returns the registers of its reply.
func (p *rawPort) readWords(addr, qty uint16) []uint16 {
	p.t.Helper()
	p.send(readRequest(addr, qty))
	return words(p.t, p.replyFrame())
}

// outcomes lists the outcomes of the request log, oldest first.
func outcomes(s *Sim) []Outcome {
	var o []Outcome
	for _, r := range s.Requests() {
		o = append(o, r.Outcome)
	}
	return o
}
