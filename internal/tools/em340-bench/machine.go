package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// Machine describes where and when a number was measured.
type Machine struct {
	NProc  int
	Model  string // "model name" of /proc/cpuinfo
	Go     string
	Kernel string
	Date   time.Time
	Load   string // the 1, 5 and 15 minute load averages of /proc/loadavg, as uptime shows them
}

// ThisMachine reads the facts of the machine this process runs on, now.
func ThisMachine() Machine {
	m := Machine{NProc: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC(), Model: "unknown", Load: "unknown"}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.Load = strings.Join(f[:3], ", ")
		}
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if name, value, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(name) == "model name" {
				m.Model = strings.TrimSpace(value)
				break
			}
		}
	}
	return m
}

func (m Machine) String() string {
	return fmt.Sprintf("%s; nproc %d; %s; %s; Linux %s", m.Date.Format("2006-01-02 15:04 MST"), m.NProc, m.Model, m.Go, m.Kernel)
}
