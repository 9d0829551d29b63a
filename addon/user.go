package addon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// The add-on starts as root only to read its options: the Supervisor
// writes /data/options.json as root with mode 0600 (write_json_file in
// supervisor/utils/json.py), and config.yaml has no key to run an add-on
// as another user. Once the options are read, the bridge needs no
// privilege but the serial adapter's group: /dev is the host's, bound in
// by the Supervisor, so its nodes carry the host's dialout group, whose
// number the image cannot know (20 on Debian, other numbers elsewhere).

// User is a uid and gid to run the bridge as, with supplementary groups.
type User struct {
	UID, GID int
	Groups   []int
}

// ParseUser reads "uid:gid", both numbers.
func ParseUser(s string) (User, error) {
	uid, gid, ok := strings.Cut(s, ":")
	u, uerr := strconv.Atoi(uid)
	g, gerr := strconv.Atoi(gid)
	if !ok || uerr != nil || gerr != nil || u <= 0 || g <= 0 {
		return User{}, fmt.Errorf("user %q: want uid:gid, two numbers above 0", s)
	}
	return User{UID: u, GID: g}, nil
}

// serialNode is udev's pattern for the nodes it gives group dialout
// (tty[A-Z]*[0-9] in systemd's 50-udev-default.rules): ttyS0, ttyUSB0,
// ttyACM0, ttyAMA0.
var serialNode = regexp.MustCompile(`^tty[A-Z].*[0-9]$`)

// ErrNoSerialGroup means no serial node existed under dev to take the host's
// serial group from, while the bridge needs a serial device.
var ErrNoSerialGroup = errors.New("no serial device node to learn the host's serial group from")

// SerialGroups returns the groups that own the host's serial nodes under dev
// (the Supervisor binds the host's /dev there), so a bridge in them can open
// an adapter plugged in later: the configured device's node if it exists
// now, and every node udev puts in group dialout. The root group is never
// returned. For a network device (a Modbus gateway URL) none are needed;
// for a serial one that finds none, the error is ErrNoSerialGroup.
func SerialGroups(dev, device string) ([]int, error) {
	if strings.Contains(device, "://") {
		return nil, nil
	}
	var groups []int
	add := func(fi fs.FileInfo) {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok && fi.Mode()&fs.ModeCharDevice != 0 && st.Gid != 0 && !slices.Contains(groups, int(st.Gid)) {
			groups = append(groups, int(st.Gid))
		}
	}
	if filepath.IsAbs(device) {
		if fi, err := os.Stat(device); err == nil {
			add(fi)
		}
	}
	entries, err := os.ReadDir(dev)
	if err != nil {
		return nil, fmt.Errorf("looking for serial nodes: %w", err)
	}
	for _, e := range entries {
		if !serialNode.MatchString(e.Name()) {
			continue
		}
		if fi, err := os.Stat(filepath.Join(dev, e.Name())); err == nil {
			add(fi)
		}
	}
	if len(groups) == 0 {
		return nil, fmt.Errorf("%w under %s", ErrNoSerialGroup, dev)
	}
	slices.Sort(groups)
	return groups, nil
}

// Become makes the whole process u for good: supplementary groups first,
// then the gid, then the uid, after which it holds no capability. Go
// applies each call to every thread of the process.
func Become(u User) error {
	if err := syscall.Setgroups(u.Groups); err != nil {
		return fmt.Errorf("setgroups %v: %w", u.Groups, err)
	}
	if err := syscall.Setgid(u.GID); err != nil {
		return fmt.Errorf("setgid %d: %w", u.GID, err)
	}
	if err := syscall.Setuid(u.UID); err != nil {
		return fmt.Errorf("setuid %d: %w", u.UID, err)
	}
	return nil
}
