package kerneltest

import (
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// CPIOWriter writes a cpio archive in the "newc" format the kernel unpacks as an
// initramfs. Go's archive packages have no cpio, and the format is small.
type CPIOWriter struct {
	w   io.Writer
	ino uint32
	err error
}

// NewCPIOWriter returns a writer appending archive entries to w.
func NewCPIOWriter(w io.Writer) *CPIOWriter { return &CPIOWriter{w: w, ino: 1} }

// Mode bits of a newc header (the kernel's S_IF* values).
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
	cpioChar    = 0o020000
)

// Dir adds a directory.
func (c *CPIOWriter) Dir(name string, perm fs.FileMode) error {
	return c.entry(name, cpioDir|uint32(perm.Perm()), 0, 0, nil)
}

// File adds a regular file with the given contents.
func (c *CPIOWriter) File(name string, perm fs.FileMode, data []byte) error {
	return c.entry(name, cpioFile|uint32(perm.Perm()), 0, 0, data)
}

// Symlink adds a symbolic link name → target.
func (c *CPIOWriter) Symlink(name, target string) error {
	return c.entry(name, cpioSymlink|0o777, 0, 0, []byte(target))
}

// CharDevice adds a character device node, such as /dev/console, which the
// kernel opens for init before any devtmpfs is mounted.
func (c *CPIOWriter) CharDevice(name string, perm fs.FileMode, major, minor uint32) error {
	return c.entry(name, cpioChar|uint32(perm.Perm()), major, minor, nil)
}

// Close writes the trailer; it does not close the underlying writer.
func (c *CPIOWriter) Close() error { return c.entry("TRAILER!!!", 0, 0, 0, nil) }

func (c *CPIOWriter) entry(name string, mode, rmajor, rminor uint32, data []byte) error {
	if c.err != nil {
		return c.err
	}
	name = strings.TrimPrefix(name, "/")
	nlink := 1
	if mode&0o170000 == cpioDir {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	c.ino++
	buf := append([]byte(hdr), name...)
	buf = append(buf, 0)
	buf = pad4(buf)
	buf = append(buf, data...)
	buf = pad4(buf)
	_, c.err = c.w.Write(buf)
	return c.err
}

// pad4 pads to a multiple of 4 bytes; every header starts 4-aligned, so the
// length of buf alone decides.
func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
