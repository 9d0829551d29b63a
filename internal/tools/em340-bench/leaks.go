package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// Resources are the process's goroutines and open file descriptors.
type Resources struct{ Goroutines, FDs int }

// CountResources counts this process's goroutines and entries of /proc/self/fd.
func CountResources() (Resources, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return Resources{}, fmt.Errorf("count fds: %w", err)
	}
	return Resources{Goroutines: runtime.NumGoroutine(), FDs: len(entries)}, nil
}

// Baseline is the least of a few counts over a short while: goroutines on
// their way out do not inflate it.
func Baseline(ctx context.Context) (Resources, error) {
	best := Resources{Goroutines: 1 << 30, FDs: 1 << 30}
	for range 10 {
		r, err := CountResources()
		if err != nil {
			return Resources{}, err
		}
		best.Goroutines, best.FDs = min(best.Goroutines, r.Goroutines), min(best.FDs, r.FDs)
		if err := waitCtx(ctx, 20*time.Millisecond); err != nil {
			return Resources{}, err
		}
	}
	return best, nil
}

// Settle waits up to limit for the counts to come back within slack of
// base. It returns the last counts, and an error with a goroutine dump if they
// did not.
func Settle(ctx context.Context, base, slack Resources, limit time.Duration) (Resources, error) {
	deadline := time.Now().Add(limit)
	for {
		r, err := CountResources()
		if err != nil {
			return r, err
		}
		if r.Goroutines <= base.Goroutines+slack.Goroutines && r.FDs <= base.FDs+slack.FDs {
			return r, nil
		}
		if time.Now().After(deadline) {
			var dump bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&dump, 1)
			fds, _ := os.ReadDir("/proc/self/fd")
			var names []string
			for _, e := range fds {
				target, _ := os.Readlink("/proc/self/fd/" + e.Name())
				names = append(names, e.Name()+"→"+target)
			}
			return r, fmt.Errorf("resources grew: %d goroutines (baseline %d, slack %d), %d fds (baseline %d, slack %d)\nfds: %v\n%s",
				r.Goroutines, base.Goroutines, slack.Goroutines, r.FDs, base.FDs, slack.FDs, names, dump.String())
		}
		if err := waitCtx(ctx, 20*time.Millisecond); err != nil {
			return r, err
		}
	}
}
