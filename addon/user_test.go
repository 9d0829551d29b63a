package addon_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/em340-bridge/em340-bridge/addon"
	"github.com/em340-bridge/em340-bridge/internal/testenv"
	"golang.org/x/sys/unix"
)

// mknod makes a character device node owned by root:gid with mode 0660, as
// udev leaves a serial node; it needs root, as udev does.
func mknod(t *testing.T, path string, major, minor uint32, gid int) {
	t.Helper()
	if os.Getuid() != 0 {
		testenv.Missing(t, "root", "device nodes can only be made as root: run the tests as root, as CI does")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(path, unix.S_IFCHR|0o660, int(unix.Mkdev(major, minor))); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		t.Fatal(err)
	}
}

func TestSerialGroups(t *testing.T) {
	for _, tc := range []struct {
		name    string
		layout  func(t *testing.T, dev string)
		device  string // relative to dev unless it has a scheme
		want    []int
		wantErr error
	}{
		{"udev's dialout nodes only", func(t *testing.T, dev string) {
			mknod(t, filepath.Join(dev, "ttyS0"), 4, 64, 20)
			mknod(t, filepath.Join(dev, "ttyAMA0"), 204, 64, 20)
			mknod(t, filepath.Join(dev, "tty1"), 4, 1, 5)         // a console: group tty
			mknod(t, filepath.Join(dev, "ttyS1"), 4, 65, 0)       // the root group is never added
			mknod(t, filepath.Join(dev, "watchdog0"), 10, 130, 7) // not a tty
		}, "ttyUSB0", []int{20}, nil},
		{"the adapter plugged in at start, any group", func(t *testing.T, dev string) {
			mknod(t, filepath.Join(dev, "ttyUSB0"), 188, 0, 18)
			mknod(t, filepath.Join(dev, "ttyS0"), 4, 64, 20)
			if err := os.MkdirAll(filepath.Join(dev, "serial", "by-id"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../../ttyUSB0", filepath.Join(dev, "serial", "by-id", "usb-FTDI-if00-port0")); err != nil {
				t.Fatal(err)
			}
		}, "serial/by-id/usb-FTDI-if00-port0", []int{18, 20}, nil},
		{"a file named like a node", func(t *testing.T, dev string) {
			if err := os.WriteFile(filepath.Join(dev, "ttyS0"), nil, 0o660); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(filepath.Join(dev, "ttyS0"), 0, 20); err != nil {
				t.Fatal(err)
			}
		}, "ttyUSB0", nil, addon.ErrNoSerialGroup},
		{"no serial node at all", func(*testing.T, string) {}, "ttyUSB0", nil, addon.ErrNoSerialGroup},
		{"a Modbus gateway needs none", func(*testing.T, string) {}, "tcp://192.168.1.40:502", nil, nil},
		{"RTU over TCP needs none", func(*testing.T, string) {}, "rtuovertcp://gateway.lan:502", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := t.TempDir()
			tc.layout(t, dev)
			device := tc.device
			if !strings.Contains(device, "://") {
				device = filepath.Join(dev, device)
			}
			got, err := addon.SerialGroups(dev, device)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("groups %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := addon.SerialGroups(filepath.Join(t.TempDir(), "none"), "/dev/ttyUSB0"); err == nil || errors.Is(err, addon.ErrNoSerialGroup) {
		t.Errorf("a missing dev directory: error %v, want one of its own", err)
	}
}

func TestParseUser(t *testing.T) {
	if u, err := addon.ParseUser("65532:65532"); err != nil || u.UID != 65532 || u.GID != 65532 {
		t.Errorf("ParseUser(65532:65532) = %+v, %v", u, err)
	}
	for _, bad := range []string{"", "65532", "nonroot:nonroot", "0:0", "65532:0", "-1:5", "1:2:3"} {
		if _, err := addon.ParseUser(bad); err == nil {
			t.Errorf("ParseUser(%q) accepted", bad)
		}
	}
}
