package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, 100 on
// every Linux architecture the bridge ships for.
const userHZ = 100

// procStats is what the kernel says about a process.
type procStats struct {
	RSS, HWM int64         // VmRSS and VmHWM, bytes
	CPU      time.Duration // utime + stime
}

// readProcStats reads /proc/PID/status and /proc/PID/stat.
func readProcStats(pid int) (procStats, error) {
	var st procStats
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return st, fmt.Errorf("%s: %w", name, err)
		}
		if name == "VmRSS" {
			st.RSS = kb * 1024
		} else {
			st.HWM = kb * 1024
		}
	}
	if err := sc.Err(); err != nil {
		return st, err
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name may hold spaces and parentheses: fields start after the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return st, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(fields[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return st, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, fields[11], fields[12])
	}
	st.CPU = time.Duration(utime+stime) * time.Second / userHZ
	return st, nil
}

// moduleRoot is the directory of the main module's go.mod, from the go tool.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the module")
	}
	return filepath.Dir(gomod), nil
}

// buildBridge builds ./cmd/em340-bridge the way the image does into out and
// returns its size in bytes.
func buildBridge(ctx context.Context, out string) (int64, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return 0, err
	}
	// The release build's flags, as in the Dockerfile.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "./cmd/em340-bridge")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("go build: %w\n%s", err, msg)
	}
	fi, err := os.Stat(out)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// buildCommand is buildBridge's command line, for the record.
const buildCommand = `CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o em340-bridge ./cmd/em340-bridge`
