// Package link owns the serial line to the meter and its lifecycle: it opens the
// port, serialises requests, notices loss at once and reconnects with backoff.
package link

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/avast/retry-go/v4"
	"golang.org/x/sys/unix"

	"github.com/em340-bridge/em340-bridge/meter"
)

// ErrNotOnline is returned by Do while the link is not online.
var ErrNotOnline = errors.New("serial link is not online")

// Prover checks that the meter at unit answers and is the expected one; the
// link calls it for every unit after every open and is online once one
// succeeds. An error matching meter.ErrWrongMeter counts as answering, with
// CauseWrongMeter for that unit.
type Prover func(ctx context.Context, unit uint8, r meter.Reader) error

// Config sets up a Link.
type Config struct {
	Device       string  // path, by-id link, usb:VID:PID[:SERIAL] or a gateway URL (ParseGateway)
	Serial       Serial  // line settings; a gateway ignores all but the timeout
	Units        []uint8 // the meters' Modbus addresses on the line, in polling order; nil means {1}
	Backoff      ReconnectBackoff
	OfflineAfter time.Duration // reconnecting → offline
	MinGap       time.Duration // quiet time after a reply before the next query (EM340: 40 ms)
	MaxNoAnswer  int           // consecutive unanswered requests that mean a meter is gone (EM340: 2–3)
	// MaxFailedSnapshots is how many Do sessions of a unit in a row may fail
	// (fn returns an error other than ctx's) before the link counts that
	// meter as not answering; 0 means 3. Garbled or stale replies fail a
	// snapshot without ever being "unanswered". When no unit answers, the
	// link reconnects.
	MaxFailedSnapshots int
	Prove              Prover
	OnChange           func(Status) // called, in order, on every state or cause change; must not block
	Logger             *slog.Logger

	open      func(ctx context.Context, path string, s Serial) (port, error) // nil: openRTU, or dialGateway
	sys       sysfs                                                          // zero: /sys and /dev
	enumerate func(at string) ([]usbPort, error)                             // nil: sys.ports
}

// Link is the line to the meters: a serial adapter, or a gateway. Create it
// with New, run it with Run, and read through Do.
type Link struct {
	cfg     Config
	log     *slog.Logger
	res     resolver
	gateway *Gateway // nil: a local serial adapter

	session sync.Mutex // held by Do and by (re)connecting: a snapshot never meets a reopen

	mu       sync.Mutex // guards what follows
	port     port
	online   bool
	status   Status
	lostAt   time.Time
	outageID int         // bumped at every loss and recovery; stale offline timers check it
	resolved string      // device node in use or last tried
	lastIO   time.Time   // end of the last request, for the inter-frame gap
	counts   []unitCount // per unit, in cfg.Units order
	deniedAt time.Time   // first EACCES of the current run of them; zero: none
	// adapter is the USB adapter port the configured link last led to: the
	// kernel keeps no record of an unplugged adapter, so this is the only one.
	adapter *usbPort
	// denied is the node the last attempt found through sysfs and could not
	// open for EACCES (udev had not set its group yet); nil: none.
	denied *deniedNode

	notify sync.Mutex // orders OnChange calls
	lost   chan Cause // the request path reports loss to Run

	everOnline   bool
	offlineTimer *time.Timer
}

// New returns a link; nothing is opened until Run.
func New(cfg Config) *Link {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.enumerate == nil {
		cfg.enumerate = cfg.sys.ports
	}
	if cfg.MaxNoAnswer < 1 {
		cfg.MaxNoAnswer = 3
	}
	if cfg.MaxFailedSnapshots < 1 {
		cfg.MaxFailedSnapshots = 3
	}
	if cfg.Prove == nil {
		cfg.Prove = func(context.Context, uint8, meter.Reader) error { return nil }
	}
	if len(cfg.Units) == 0 {
		cfg.Units = []uint8{1}
	}
	l := &Link{
		cfg:    cfg,
		log:    cfg.Logger,
		res:    resolver{device: cfg.Device, sys: cfg.sys, enumerate: cfg.enumerate},
		status: Status{State: Reconnecting, Cause: CauseStarting, Since: time.Now(), Device: cfg.Device},
		counts: make([]unitCount, len(cfg.Units)),
		lost:   make(chan Cause, 1),
	}
	for _, u := range cfg.Units {
		l.status.Units = append(l.status.Units, UnitStatus{Unit: u})
	}
	if g, err := ParseGateway(cfg.Device); err == nil {
		l.gateway = &g
		if cfg.open == nil {
			l.cfg.open = func(ctx context.Context, _ string, s Serial) (port, error) { return dialGateway(ctx, g, s) }
		}
	}
	if l.cfg.open == nil {
		l.cfg.open = func(_ context.Context, path string, s Serial) (port, error) {
			return openRTU(path, s, cfg.sys, cfg.Logger)
		}
	}
	return l
}

// Status is the link's state now.
func (l *Link) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status.clone()
}

// Run keeps the link up until ctx is done, then closes the port. It returns
// ctx's error, or an error if the device directory cannot be watched.
func (l *Link) Run(ctx context.Context) error {
	// A gateway has no device node to watch: its redials are the watch
	// (delayType keeps them short while it refuses).
	var appeared, changed <-chan struct{}
	if l.gateway == nil {
		watch, err := newDirWatch(l.watchTargets, l.configuredPresent, l.log)
		if err != nil {
			return fmt.Errorf("watch device directory: %w", err)
		}
		watchCtx, stopWatch := context.WithCancel(ctx)
		var watching sync.WaitGroup
		defer func() {
			stopWatch()
			watching.Wait()
			_ = watch.close()
		}()
		watching.Go(func() { watch.run(watchCtx) })
		appeared, changed = watch.appeared, watch.changed
	}

	defer l.stopOfflineTimer()
	l.beginOutage(CauseStarting, "")
	for {
		err := retry.Do(func() error { return l.connect(ctx) },
			retry.Context(ctx),
			retry.Attempts(0),
			retry.DelayType(l.cfg.Backoff.delayType(l.isOffline, l.inPermissionGrace, l.gatewayRefusing)),
			retry.MaxDelay(l.cfg.Backoff.Max),
			retry.WithTimer(wakeTimer{ctx: ctx, wake: appeared}),
		)
		if err != nil {
			l.closePort()
			return err
		}
		cause, detail, err := l.waitForLoss(ctx, changed)
		if err != nil {
			l.closePort()
			return err
		}
		// Say so first: closing waits for a request in flight to end (one read slice).
		l.beginOutage(cause, detail)
		l.closePort()
	}
}

// waitForLoss blocks while the link is online, until a request reports loss,
// the device node vanishes, or ctx is done.
func (l *Link) waitForLoss(ctx context.Context, changed <-chan struct{}) (Cause, string, error) {
	for {
		select {
		case <-ctx.Done():
			return CauseNone, "", ctx.Err()
		case cause := <-l.lost:
			return cause, "", nil
		case <-changed:
			if !l.stillPresent() {
				return CauseAdapterMissing, "device node removed", nil
			}
		}
	}
}

// ErrUnknownUnit is returned by Do for a unit that is not in Config.Units.
var ErrUnknownUnit = errors.New("no such unit on this link")

// Do runs fn with the reader of the meter at unit while the link is online,
// whether or not that meter answers at the moment (a session is how one that
// stopped is tried again); a snapshot made of several requests is never
// interleaved with a reconnect or with another meter's requests.
func (l *Link) Do(ctx context.Context, unit uint8, fn func(r meter.Reader) error) error {
	i := slices.Index(l.cfg.Units, unit)
	if i < 0 {
		return fmt.Errorf("unit %d: %w", unit, ErrUnknownUnit)
	}
	l.session.Lock()
	defer l.session.Unlock()
	l.mu.Lock()
	p, online := l.port, l.online
	l.mu.Unlock()
	if !online {
		return ErrNotOnline
	}
	err := fn(reader{l: l, p: p, unit: i})
	l.afterSession(ctx, i, err)
	return err
}

// afterSession counts a unit's failed sessions: a meter that answers every
// request, but with garbage, never trips MaxNoAnswer. A session that succeeds
// says the meter answers.
func (l *Link) afterSession(ctx context.Context, i int, err error) {
	if ctx.Err() != nil && err != nil {
		return // cancelled: says nothing about the meter
	}
	if err == nil {
		l.mu.Lock()
		l.counts[i].failedDo = 0
		answering := l.status.Units[i].Answering
		l.mu.Unlock()
		if !answering {
			l.unitAnswers(i)
		}
		return
	}
	l.mu.Lock()
	l.counts[i].failedDo++
	failed := l.counts[i].failedDo >= l.cfg.MaxFailedSnapshots
	l.mu.Unlock()
	if failed {
		l.unitSilent(i, err)
	}
}

// connect is one attempt: resolve, open, prove. It holds the session so no Do
// runs against a half-open port.
func (l *Link) connect(ctx context.Context) error {
	l.session.Lock()
	defer l.session.Unlock()
	l.drain()
	l.mu.Lock()
	known := l.adapter
	l.mu.Unlock()
	start := time.Now()
	path, port, err := l.resolve(known)
	resolved := time.Since(start)
	l.mu.Lock()
	l.resolved = path
	l.mu.Unlock()
	if err != nil {
		l.openFailed(err)
		return err
	}
	p, err := l.cfg.open(ctx, path, l.cfg.Serial)
	if err != nil {
		if port != nil && classifyOpen(err) == CausePermissionDenied {
			l.rememberDenied(path, *port)
		}
		l.openFailed(err)
		return err
	}
	l.log.Debug("port opened", "device", path, "resolve", resolved, "open", time.Since(start)-resolved)
	if port != nil {
		l.mu.Lock()
		l.adapter = port // found through sysfs: known already
		l.mu.Unlock()
	} else if l.gateway == nil {
		l.learnAdapter(path)
	}
	l.mu.Lock()
	l.port, l.deniedAt = p, time.Time{}
	clear(l.counts)
	l.mu.Unlock()
	// Every meter on the line is asked; the link is online when one answers.
	units := make([]UnitStatus, len(l.cfg.Units))
	var errs []error
	for i, u := range l.cfg.Units {
		err := l.cfg.Prove(ctx, u, reader{l: l, p: p, unit: i})
		units[i] = proven(u, err)
		switch {
		case ctx.Err() != nil:
			l.closePort()
			return ctx.Err()
		case err != nil && isAdapterGone(err) && (l.gateway != nil || !l.stillPresent()):
			l.closePort()
			l.drain()
			l.setCause(l.lossCause(err), err)
			return err // the line itself went: the other meters cannot answer either
		case !units[i].Answering:
			errs = append(errs, fmt.Errorf("unit %d: %w", u, err))
		}
	}
	if len(errs) == len(units) {
		err := errors.Join(errs...)
		l.closePort()
		l.drain()
		l.setCause(CauseMeterSilent, err)
		return err
	}
	l.goOnline(units)
	return nil
}

// resolve is the resolver's answer, except after an EACCES on a node found
// through sysfs: that node, if it is still the same one, is opened again
// without a second look. The retry comes from udev's chmod, and udev is
// writing sysfs at that moment (the look cost ~15 ms more per attempt on the
// real-kernel rig than on a fixed path).
func (l *Link) resolve(known *usbPort) (string, *usbPort, error) {
	l.mu.Lock()
	d := l.denied
	l.denied = nil
	l.mu.Unlock()
	if d != nil && d.still() {
		return d.path, &d.port, nil
	}
	return l.res.resolve(known)
}

// deniedNode is a node a by-id or usb: link identified and was refused.
type deniedNode struct {
	path      string
	ino, rdev uint64 // the same inode and device number: the same node
	port      usbPort
}

func (l *Link) rememberDenied(path string, port usbPort) {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return
	}
	l.mu.Lock()
	l.denied = &deniedNode{path: path, ino: st.Ino, rdev: uint64(st.Rdev), port: port}
	l.mu.Unlock()
}

// still reports whether the node is the one that was refused: a replug in
// between makes a new node (a new inode), whatever its name.
func (d *deniedNode) still() bool {
	var st unix.Stat_t
	return unix.Stat(d.path, &st) == nil && st.Ino == d.ino && uint64(st.Rdev) == d.rdev
}

// proven is a unit's status after Prove said err.
func proven(unit uint8, err error) UnitStatus {
	switch {
	case err == nil:
		return UnitStatus{Unit: unit, Answering: true}
	case errors.Is(err, meter.ErrWrongMeter):
		return UnitStatus{Unit: unit, Answering: true, Cause: CauseWrongMeter, Detail: err.Error()}
	}
	return UnitStatus{Unit: unit, Cause: CauseMeterSilent, Detail: err.Error()}
}

// drain forgets a loss reported by a request that ran before this attempt.
func (l *Link) drain() {
	select {
	case <-l.lost:
	default:
	}
}

func (l *Link) closePort() {
	l.mu.Lock()
	p := l.port
	l.port, l.online = nil, false
	l.mu.Unlock()
	if p != nil {
		if err := p.Close(); err != nil {
			l.log.Debug("close port", "err", err)
		}
	}
}

// permissionGrace is how long EACCES may last before it is the cause shown:
// udev creates the node 0600 root:root and gives it group dialout ~90 ms
// later, so a non-root bridge sees EACCES at every replug for a moment.
const permissionGrace = time.Second

// graceDelay caps the backoff while EACCES may still be udev's chmod to come.
const graceDelay = 100 * time.Millisecond

// openFailed records why an open failed. A brief EACCES keeps the cause the
// outage had (adapter missing); only one lasting permissionGrace is shown.
func (l *Link) openFailed(err error) {
	cause := classifyOpen(err)
	if l.gateway != nil {
		cause = classifyGateway(err)
	}
	if cause == CausePermissionDenied {
		l.mu.Lock()
		if l.deniedAt.IsZero() {
			l.deniedAt = time.Now()
		}
		brief := time.Since(l.deniedAt) <= permissionGrace
		l.mu.Unlock()
		if brief {
			l.log.Debug("open denied, waiting for udev to set the group", "err", err)
			return
		}
	} else {
		l.mu.Lock()
		l.deniedAt = time.Time{}
		l.mu.Unlock()
		l.log.Debug("open failed", "err", err)
	}
	if cause == CauseDeviceNotAllowed {
		err = fmt.Errorf("device not allowed by the container's device rules: %w", err)
	}
	l.setCause(cause, err)
}

// gatewayRedial caps the wait between redials of a gateway that refuses
// connections or cannot be reached.
const gatewayRedial = time.Second

// gatewayRefusing reports whether the last attempt failed to connect to a
// gateway at all (not a meter that does not answer through it).
func (l *Link) gatewayRefusing() bool {
	if l.gateway == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status.State != Online && isGatewayCause(l.status.Cause)
}

// inPermissionGrace: the last opens failed with EACCES for less than permissionGrace.
func (l *Link) inPermissionGrace() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.deniedAt.IsZero() && time.Since(l.deniedAt) <= permissionGrace
}

// watchTargets are the paths the directory watch follows: the configured one
// first, then the node in use or last tried.
func (l *Link) watchTargets() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	configured := l.cfg.Device
	if _, usb := parseUSB(configured); usb {
		configured = filepath.Join(l.cfg.sys.devDir(), "tty") // the adapter's node appears there
	}
	return []string{configured, l.resolved}
}

// configuredPresent: the configured path leads to an existing node. (A USB
// identity is not a path: its node is found by enumerating.)
func (l *Link) configuredPresent() bool {
	if _, usb := parseUSB(l.cfg.Device); usb {
		return false
	}
	_, err := os.Stat(l.cfg.Device)
	return err == nil
}

// stillPresent: the node in use is still there and the configured path, if
// it exists, still leads to it (udev may not have made the by-id link yet
// when the node was found without it). A few stats: it runs at every change
// in the watched directories and after unanswered requests.
func (l *Link) stillPresent() bool {
	if l.gateway != nil {
		return true // no node: a lost connection reports itself
	}
	l.mu.Lock()
	node := l.resolved
	l.mu.Unlock()
	if node == "" {
		return false
	}
	if _, err := os.Stat(node); err != nil {
		return false
	}
	if _, usb := parseUSB(l.cfg.Device); usb {
		return true
	}
	path, err := filepath.EvalSymlinks(l.cfg.Device)
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	return err == nil && path == node
}

// learnAdapter remembers which USB adapter port a configured link (by-id,
// by-path, a udev rule's) led to, so that at the next replug its node is
// opened before udev has made the link again. (A usb: identity and a node
// found without the link are known from sysfs already; a node path names
// the node, whatever adapter gets it.) It runs with the port just opened,
// while the node surely exists (an unplug right after the open would leave
// nothing to learn from), and reads the node's own entry in sysfs.
func (l *Link) learnAdapter(node string) {
	if _, usb := parseUSB(l.cfg.Device); usb || node == filepath.Clean(l.cfg.Device) {
		return
	}
	if target, err := filepath.EvalSymlinks(l.cfg.Device); err != nil || target != node {
		return
	}
	p, ok := l.res.portOf(node)
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case ok && p.Node == filepath.Clean(l.cfg.Device):
		l.adapter = nil // the configured path is the node itself
	case ok:
		l.adapter = &p
	default:
		l.adapter = nil // not a USB serial port
	}
}

func (l *Link) stopOfflineTimer() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.offlineTimer != nil {
		l.offlineTimer.Stop()
	}
}

func (l *Link) isOffline() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status.State == Offline
}
