//go:build soak

package main

import (
	"context"
	"testing"
	"time"
)

// TestSoakShort is the CI form of the soak: 50 unplug/replug cycles with
// broker restarts and mutes, each checked for a fresh state message and for
// goroutines and fds that stay within a small slack of the baseline. It takes
// half a minute, so it is built only with the soak tag, which .ci/run sets:
// go test -race -tags soak -run '^TestSoakShort$' ./internal/tools/em340-bench/
func TestSoakShort(t *testing.T) {
	needMosquitto(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (repeat with: go run ./internal/tools/em340-bench soak -short -cycles 50 -seed %d)", seed, seed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := Soak(ctx, ShortSoak(seed, 50))
	if err != nil {
		t.Fatal(err)
	}
	if res.Cycles != 50 {
		t.Fatalf("%d cycles ran, want 50", res.Cycles)
	}
	t.Logf("%d cycles, %d broker restarts, %d mutes; goroutines %d→%d, fds %d→%d; resume median %v worst %v; %v",
		res.Cycles, res.Restarts, res.Mutes, res.Baseline.Goroutines, res.Worst.Goroutines,
		res.Baseline.FDs, res.Worst.FDs, res.Resume.Median, res.Resume.Max, res.Elapsed)
}
