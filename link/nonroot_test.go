package link

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/meter/emsim"
)

// nonRootDeviceEnv tells a re-run of the test binary to be the non-root
// bridge; nonRootSysEnv and nonRootDevEnv give it the sysfs to read.
const (
	nonRootDeviceEnv = "EM340_LINK_TEST_NONROOT_DEVICE"
	nonRootSysEnv    = "EM340_LINK_TEST_NONROOT_SYS"
	nonRootDevEnv    = "EM340_LINK_TEST_NONROOT_DEV"
)

// A non-root bridge in group dialout that opens the node the moment it
// appears gets EACCES until udev's chmod (~90 ms): it must retry at once and
// never publish "permission denied". Root ignores file modes, so the test
// binary runs again as nobody with dialout as a supplementary group, against
// a simulator that really makes the pty 0600 root:root, then 0660 dialout.
// Through by-id the node is opened before udev's link exists (a second
// after the chmod here), so the retry after the chmod must come from the
// node's own change of mode.
func TestNonRootReplugIsNotPermissionDenied(t *testing.T) {
	if os.Getenv(nonRootDeviceEnv) != "" {
		t.Skip("the child's half is TestNonRootChild")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root to start a process as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip(err)
	}
	dialout, err := user.LookupGroup("dialout")
	if err != nil {
		t.Skip(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	dgid, _ := strconv.Atoi(dialout.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(dgid)}}
	forLayouts(t, func(t *testing.T, l layout) { nonRootReplug(t, l, cred) })
}

func nonRootReplug(t *testing.T, l layout, cred *syscall.Credential) {
	searchable := func(root string) {
		for dir := root; dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
			must(t, os.Chmod(dir, 0o755)) // by nobody
		}
	}
	root := t.TempDir()
	searchable(root)
	sim := emsim.New(emsim.Options{})
	var pace emsim.Pace
	env := []string{}
	if l == byIDPath {
		pace.Links = time.Second
		sys := newSysTree(t)
		searchable(sys.root)
		for n := range 4 {
			sys.usbSerial(fmt.Sprintf("ttyUSB%d", n), rigAdapter, "00", "0")
		}
		env = append(env, nonRootSysEnv+"="+sys.root, nonRootDevEnv+"="+root)
	}
	if err := sim.StartTree(emsim.DevTree{Root: root, Pace: pace}); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	device := sim.NodePath()
	if l == byIDPath {
		device = sim.ByIDPath()
	}
	// The binary lives in a root-only build directory: copy it where nobody may run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "link.test")
	copyFile(t, self, bin)

	ctx, cancel := context.WithTimeout(context.Background(), 4*hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestNonRootChild$", "-test.v")
	cmd.Env = append(append(os.Environ(), nonRootDeviceEnv+"="+device), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var seen []string
	waitLine := func(prefix string) {
		t.Helper()
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the non-root link ended before %q; it said:\n%s", prefix, strings.Join(seen, "\n"))
				}
				seen = append(seen, l)
				if strings.HasPrefix(l, prefix) {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no %q from the non-root link; it said:\n%s", prefix, strings.Join(seen, "\n"))
			}
		}
	}
	waitLine("STATE online")
	for i := 0; i < 3; i++ {
		pts := sim.Device()
		if err := sim.Unplug(); err != nil {
			t.Fatal(err)
		}
		waitLine("STATE reconnecting adapter missing")
		for deadline := time.Now().Add(hangGuard); processHolds(cmd.Process.Pid, pts); {
			if time.Now().After(deadline) {
				t.Fatal("the non-root link kept the old port open")
			}
			time.Sleep(5 * time.Millisecond)
		}
		replugged := make(chan error, 1)
		go func() { replugged <- sim.Replug() }() // returns once udev's links are in place
		waitLine("STATE online")
		if _, err := os.Lstat(sim.ByIDPath()); l == byIDPath && err == nil {
			t.Fatalf("cycle %d: online only once udev had made the by-id link", i)
		}
		if err := <-replugged; err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	_ = cmd.Wait()
	all := strings.Join(seen, "\n")
	for _, l := range seen {
		if strings.HasPrefix(l, "STATE") && strings.Contains(l, string(CausePermissionDenied)) {
			t.Errorf("a brief EACCES at replug was published: %s", l)
		}
	}
	if !strings.Contains(all, "open denied") {
		t.Errorf("no open was ever denied: the test did not exercise udev's chmod\n%s", all)
	}
}

// TestNonRootChild is the non-root half of the test above; it runs only in
// the re-run binary.
func TestNonRootChild(t *testing.T) {
	device := os.Getenv(nonRootDeviceEnv)
	if device == "" {
		t.Skip("run by TestNonRootReplugIsNotPermissionDenied")
	}
	l := New(Config{
		sys:     sysfs{root: os.Getenv(nonRootSysEnv), dev: os.Getenv(nonRootDevEnv)},
		Device:  device,
		Serial:  Serial{Baud: 115200, Parity: "none", StopBits: 1, Timeout: 300 * time.Millisecond},
		Backoff: ReconnectBackoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2},
		MinGap:  2 * time.Millisecond,
		OnChange: func(s Status) {
			fmt.Printf("STATE %s %s %s\n", s.State, s.Cause, s.Detail)
		},
		Logger: slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*hangGuard)
	defer cancel()
	_ = l.Run(ctx)
}

func processHolds(pid int, path string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && (target == path || target == path+" (deleted)") {
			return true
		}
	}
	return false
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	must(t, dst.Close())
}
