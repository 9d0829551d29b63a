package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/em340-bridge/em340-bridge/meter"
)

// The ioctl hands the kernel a struct serial_struct: 72 bytes on 64-bit
// Linux, 60 on 32-bit (offsets from <linux/serial.h>).
func TestSerialStructLayout(t *testing.T) {
	want := uintptr(60)
	if unsafe.Sizeof(uintptr(0)) == 8 {
		want = 72
	}
	if got := unsafe.Sizeof(serialStruct{}); got != want {
		t.Errorf("sizeof(serial_struct) = %d, want %d", got, want)
	}
	if got := unsafe.Offsetof(serialStruct{}.Flags); got != 16 {
		t.Errorf("offset of flags = %d, want 16", got)
	}
}

// fakeSysfs lays out /sys/dev/char/MAJ:MIN/device for the node at path:
// its driver link and, unless timer is "", the latency_timer ftdi_sio adds.
func fakeSysfs(t *testing.T, path, driver, timer string) sysfs {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	dev := filepath.Join(root, "dev", "char", fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), "device")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		t.Fatal(err)
	}
	if driver != "" {
		if err := os.Symlink("../../../../bus/usb-serial/drivers/"+driver, filepath.Join(dev, "driver")); err != nil {
			t.Fatal(err)
		}
	}
	if timer != "" {
		if err := os.WriteFile(filepath.Join(dev, "latency_timer"), []byte(timer+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return sysfs{root: root}
}

func TestFTDILatencyTimer(t *testing.T) {
	_, node := plugSim(t)
	regular := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(regular, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		path          string
		driver, timer string // the port's driver and attribute; "" none
		want          string
		ok            bool
	}{
		{"ftdi_sio out of reset", node, "ftdi_sio", "16", "16", true},
		{"ftdi_sio in low latency", node, "ftdi_sio", "1", "1", true},
		{"ftdi_sio before its attributes", node, "ftdi_sio", "", "", true},
		{"another driver", node, "ch341", "", "", false},
		{"no driver", node, "", "16", "", false},
		{"not a device node", regular, "ftdi_sio", "16", "", false},
		{"no node", filepath.Join(t.TempDir(), "ttyUSB9"), "ftdi_sio", "16", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := sysfs{root: t.TempDir()}
			if tt.path == node {
				sys = fakeSysfs(t, node, tt.driver, tt.timer)
			}
			got, ok := ftdiLatencyTimer(sys, tt.path)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ftdiLatencyTimer = %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// A port of ftdi_sio whose timer is not 1 ms (or not shown yet) is asked for low
// latency on an fd of the bridge's own; where the driver refuses (a pty
// answers ENOTTY) the port still opens and reads, and the log says why the
// timer stayed. One that is in low latency already is not asked.
func TestOpenSetsFTDILowLatency(t *testing.T) {
	for _, tt := range []struct {
		driver, timer string
		wantLog       string // "" none
	}{
		{"ftdi_sio", "16", "FTDI latency timer left as it was"},
		{"ftdi_sio", "0", "FTDI latency timer left as it was"}, // qemu's emulated FT232B says 0
		{"ftdi_sio", "", "FTDI latency timer left as it was"},  // a moment after the node
		{"ftdi_sio", "1", ""},
		{"ch341", "", ""},
	} {
		t.Run(tt.driver+" timer "+tt.timer, func(t *testing.T) {
			_, node := plugSim(t)
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			p, err := openRTU(node, Serial{Baud: 115200, Timeout: time.Second}, fakeSysfs(t, node, tt.driver, tt.timer), log)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			words, err := p.ReadRegisters(context.Background(), 1, meter.AddrSerialNumber, meter.SerialNumberWords)
			if err != nil || len(words) != int(meter.SerialNumberWords) {
				t.Fatalf("read after open: %v, %d words", err, len(words))
			}
			got := logs.String()
			switch {
			case tt.wantLog == "" && strings.Contains(got, "FTDI"):
				t.Errorf("log mentions FTDI for %s, timer %q:\n%s", tt.driver, tt.timer, got)
			case tt.wantLog != "" && (!strings.Contains(got, tt.wantLog) || !strings.Contains(got, "TIOCGSERIAL")):
				t.Errorf("log does not say why the timer stayed (want %q, TIOCGSERIAL):\n%s", tt.wantLog, got)
			}
		})
	}
}

// On a tty without serial settings the ioctl fails cleanly, as ENOTTY.
func TestSetLowLatencyOnPty(t *testing.T) {
	_, node := plugSim(t)
	fd, err := unix.Open(node, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := setLowLatency(fd); !errors.Is(err, unix.ENOTTY) {
		t.Errorf("setLowLatency on a pty = %v, want ENOTTY", err)
	}
}
