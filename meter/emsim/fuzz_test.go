package emsim

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// Fuzz targets of the simulator's RTU layer, the request side of the bytes
// on the wire: FuzzFramer covers frame assembly from arbitrary chunks of
// bytes (resynchronisation after noise, silence); FuzzRespond covers what the
// meter does with any frame whose CRC checks (parsing, execution, the reply).

// Any byte stream, cut anywhere, yields only whole frames with a good CRC;
// every byte fed is accounted for (a frame, dropped, or still buffered) and the
// buffer stays bounded.
func FuzzFramer(f *testing.F) {
	read := appendCRC([]byte{1, 3, 0, 0, 0, 50})
	f.Add(read, []byte{3})
	f.Add(append(append([]byte{0xFF, 0x00}, read...), read[:5]...), []byte{1, 2, 200})
	f.Add(appendCRC([]byte{1, 0x10, 0, 0, 0, 1, 2, 0, 7}), []byte{})
	f.Add(appendCRC([]byte{1, 0x2B, 0x0E, 1, 0}), []byte{0})
	f.Add(appendCRC([]byte{1, 0x17, 0, 0, 0, 1, 0, 0, 0, 1, 2, 0, 1}), []byte{7, 7})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var fr framer
		took := 0
		take := func(frame []byte) {
			n := len(frame)
			if n < minFrameLen || n > maxFrameLen || !crcOK(frame) {
				t.Fatalf("frame % X: bad length or CRC", frame)
			}
			if want := requestLength(frame); want > 0 && want != n {
				t.Fatalf("frame % X: length %d, function says %d", frame, n, want)
			}
			req := parseRequest(frame, time.Time{})
			if req.Slave != frame[0] || req.Function != frame[1] {
				t.Fatalf("frame % X parsed as %+v", frame, req)
			}
			took += n
		}
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(n, 1+int(cuts[i]))
			}
			fr.feed(rest[:n])
			rest = rest[n:]
			if len(fr.buf) > 4*maxFrameLen {
				t.Fatalf("buffer grew to %d bytes", len(fr.buf))
			}
			for {
				frame, ok := fr.next()
				if !ok {
					break
				}
				take(frame)
			}
		}
		for fr.pending() {
			frame, ok := fr.silence()
			if !ok {
				break
			}
			take(frame)
		}
		if got := took + fr.dropped + len(fr.buf); got != len(data) {
			t.Fatalf("%d bytes fed, %d accounted for (frames %d, dropped %d, buffered %d)", len(data), got, took, fr.dropped, len(fr.buf))
		}
	})
}

// Any frame with a good CRC gets no reply or a well-formed one: the meter's
// address, the function (or its exception), a correct byte count and CRC.
func FuzzRespond(f *testing.F) {
	f.Add([]byte{1, 3, 0, 0, 0, 50})
	f.Add([]byte{1, 4, 0x04, 0x00, 0, 16})
	f.Add([]byte{1, 3, 0x50, 0x00, 0, 7})
	f.Add([]byte{1, 6, 0x11, 0x03, 0, 1})
	f.Add([]byte{0, 6, 0x20, 0x00, 0, 2})
	f.Add([]byte{1, 8, 0, 0, 0x12, 0x34})
	f.Add([]byte{1, 3, 0, 0x0B, 0, 1})
	f.Add([]byte{1, 6, 0x10, 0x02, 0, 3}) // 1-phase: EM330 only
	f.Add([]byte{1, 0x2B})
	f.Fuzz(func(t *testing.T, body []byte) {
		if len(body) < 2 || len(body) > maxFrameLen-2 {
			return
		}
		// A fresh meter each time: a write (06) must not carry over to the next input.
		s := New(Options{Static: true, FineEnergy: true, ProductionYear: 2021})
		frame := appendCRC(append([]byte(nil), body...))
		reply := s.respond(frame, time.Now(), time.Time{}).reply
		if reply == nil {
			return
		}
		if !crcOK(reply) || reply[0] != frame[0] {
			t.Fatalf("request % X: reply % X: bad CRC or address", frame, reply)
		}
		fc := frame[1]
		switch {
		case reply[1] == fc|0x80:
			if len(reply) != 5 || reply[2] < 1 || reply[2] > 4 {
				t.Fatalf("request % X: exception reply % X", frame, reply)
			}
		case reply[1] != fc:
			t.Fatalf("request % X: reply % X for another function", frame, reply)
		case fc == fcReadHolding || fc == fcReadInput:
			if len(reply) != 5+int(reply[2]) || int(reply[2]) != 2*int(uint16(frame[4])<<8|uint16(frame[5])) {
				t.Fatalf("request % X: reply % X: byte count", frame, reply)
			}
		case len(reply) != 8:
			t.Fatalf("request % X: echo % X", frame, reply)
		}
	})
}

// Any byte stream, cut anywhere, yields only ADUs whose header says their
// length, each written back byte for byte by appendMBAP; every byte is an
// ADU, skipped (another protocol), or left for more; a length no ADU can
// have stops the stream, as the gateway drops such a connection.
func FuzzMBAP(f *testing.F) {
	f.Add([]byte{0xBE, 0xEF, 0, 0, 0, 6, 1, 3, 0, 0, 0, 50}, []byte{3})
	f.Add([]byte{0, 1, 0, 0, 0, 6, 1, 6, 0x11, 0x03, 0, 1, 0, 2, 0, 1, 0, 2, 1, 3}, []byte{0, 9})
	f.Add([]byte{0, 1, 0, 7, 0, 2, 1, 3, 0, 2, 0, 0, 0, 2, 1, 4}, []byte{})
	f.Add([]byte{0, 1, 0, 0, 1, 0, 1}, []byte{1})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		var buf []byte
		took, skipped := 0, 0
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(n, 1+int(cuts[i]))
			}
			buf = append(buf, rest[:n]...)
			rest = rest[n:]
			for {
				adu, used, err := nextMBAP(buf)
				if errors.Is(err, errMBAPLength) {
					if used != 0 {
						t.Fatalf("a bad length took %d bytes", used)
					}
					return
				}
				if used == 0 {
					if err != nil {
						t.Fatalf("nothing taken, yet %v", err)
					}
					break
				}
				if used > mbapMaxADU || used > len(buf) {
					t.Fatalf("took %d of %d bytes", used, len(buf))
				}
				if err == nil {
					if got := appendMBAP(nil, adu); !bytes.Equal(got, buf[:used]) {
						t.Fatalf("ADU % X written back as % X", buf[:used], got)
					}
					took += used
				} else {
					skipped += used
				}
				buf = buf[used:]
			}
			if len(buf) >= mbapMaxADU {
				t.Fatalf("%d bytes left over: a whole ADU not taken", len(buf))
			}
		}
		if took+skipped+len(buf) != len(data) {
			t.Fatalf("%d bytes fed, %d accounted for", len(data), took+skipped+len(buf))
		}
	})
}
