package kerneltest

import (
	"bytes"
	"strconv"
	"testing"
)

// cpioEntry is one parsed newc header with its name and data.
type cpioEntry struct {
	mode, rmajor, rminor uint64
	name, data           string
}

// parseNewc reads an archive the way the kernel's initramfs unpacker does:
// 110-byte header, name padded to 4, data padded to 4.
func parseNewc(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	for off := 0; ; {
		if off%4 != 0 || len(b) < off+110 || string(b[off:off+6]) != "070701" {
			t.Fatalf("bad header at %d", off)
		}
		field := func(i int) uint64 {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("field %d at %d: %v", i, off, err)
			}
			return v
		}
		size, nameSize := int(field(6)), int(field(11))
		name := string(b[off+110 : off+110+nameSize-1])
		if b[off+110+nameSize-1] != 0 {
			t.Fatalf("name %q not NUL-terminated", name)
		}
		dataAt := (off + 110 + nameSize + 3) &^ 3
		e := cpioEntry{mode: field(1), rmajor: field(9), rminor: field(10), name: name, data: string(b[dataAt : dataAt+size])}
		off = (dataAt + size + 3) &^ 3
		if name == "TRAILER!!!" {
			if off != len(b) {
				t.Fatalf("%d bytes after the trailer", len(b)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestCPIOWriter(t *testing.T) {
	tests := []struct {
		name  string
		write func(c *CPIOWriter) error
		want  cpioEntry
	}{
		{"dir", func(c *CPIOWriter) error { return c.Dir("/usr/lib", 0o755) }, cpioEntry{mode: 0o040755, name: "usr/lib"}},
		{"file, name and data need padding", func(c *CPIOWriter) error { return c.File("init", 0o755, []byte("abcde")) },
			cpioEntry{mode: 0o100755, name: "init", data: "abcde"}},
		{"empty file", func(c *CPIOWriter) error { return c.File("etc/x", 0o644, nil) }, cpioEntry{mode: 0o100644, name: "etc/x"}},
		{"symlink", func(c *CPIOWriter) error { return c.Symlink("lib", "usr/lib") }, cpioEntry{mode: 0o120777, name: "lib", data: "usr/lib"}},
		{"console", func(c *CPIOWriter) error { return c.CharDevice("dev/console", 0o600, 5, 1) },
			cpioEntry{mode: 0o020600, rmajor: 5, rminor: 1, name: "dev/console"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			c := NewCPIOWriter(&buf)
			if err := tt.write(c); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			got := parseNewc(t, buf.Bytes())
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("archive holds %+v, want [%+v]", got, tt.want)
			}
		})
	}
}
