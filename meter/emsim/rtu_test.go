package emsim

import (
	"bytes"
	"testing"
)

func TestCRC(t *testing.T) {
	// The classic example: read 10 holding registers from slave 1.
	got := appendCRC([]byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x0A})
	want := []byte{0x01, 0x03, 0x00, 0x00, 0x00, 0x0A, 0xC5, 0xCD}
	if !bytes.Equal(got, want) {
		t.Fatalf("frame % X, want % X", got, want)
	}
	if !crcOK(want) {
		t.Fatal("crcOK rejects a good frame")
	}
	bad := append([]byte(nil), want...)
	bad[7] ^= 1
	if crcOK(bad) || crcOK(want[:3]) {
		t.Fatal("crcOK accepts a bad or short frame")
	}
}

func TestFramer(t *testing.T) {
	read := frame(0x01, 0x03, 0x00, 0x00, 0x00, 0x02)
	write := frame(0x01, 0x06, 0x11, 0x03, 0x00, 0x01)
	unknown := frame(0x01, 0x2B, 0x0E, 0x01, 0x00) // MEI: length unknown to the framer
	corrupt := append([]byte(nil), read...)
	corrupt[7] ^= 0xFF

	tests := []struct {
		name    string
		chunks  [][]byte
		silence bool // the line goes quiet after the chunks
		want    [][]byte
	}{
		{"whole frame", [][]byte{read}, false, [][]byte{read}},
		{"two frames in one chunk", [][]byte{append(append([]byte(nil), read...), write...)}, false, [][]byte{read, write}},
		{"byte by byte", splitBytes(read), false, [][]byte{read}},
		{"incomplete waits", [][]byte{read[:5]}, false, nil},
		{"incomplete dropped at silence", [][]byte{read[:5]}, true, nil},
		{"leading noise resyncs", [][]byte{{0xFF, 0x03, 0x42}, read}, false, [][]byte{read}},
		{"bad CRC then good frame", [][]byte{corrupt, read}, false, [][]byte{read}},
		{"unknown function ends at silence", [][]byte{unknown}, true, [][]byte{unknown}},
		{"unknown function needs silence", [][]byte{unknown}, false, nil},
		{"noise before a frame found at silence", [][]byte{{0x07, 0x99}, read[:4], read[4:]}, true, [][]byte{read}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f framer
			var got [][]byte
			for _, c := range tt.chunks {
				f.feed(c)
				for fr, ok := f.next(); ok; fr, ok = f.next() {
					got = append(got, fr)
				}
			}
			if tt.silence {
				for fr, ok := f.silence(); ok; fr, ok = f.silence() {
					got = append(got, fr)
				}
				if f.pending() {
					t.Fatalf("bytes left after silence: % X", f.buf)
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d frames (% X), want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Fatalf("frame %d: % X, want % X", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestFramerBounded(t *testing.T) {
	var f framer
	noise := bytes.Repeat([]byte{0x01, 0x2B}, 2000) // unknown function, never a frame
	f.feed(noise)
	if len(f.buf) > 4*maxFrameLen {
		t.Fatalf("buffer grew to %d bytes", len(f.buf))
	}
}

func splitBytes(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}
