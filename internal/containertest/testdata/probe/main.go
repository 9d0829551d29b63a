// Command probe runs inside a container of the compose file's bridge
// service: it says "ready", waits for each path given to appear (the test
// creates them on the host after the container started), opens it as the
// bridge opens a serial port, and prints "path result" per line, where the
// result is "ok" or the errno name (ENXIO, EPERM, …).
package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	fmt.Println("ready")
	for _, path := range os.Args[1:] {
		fmt.Println(path, open(path))
	}
}

func open(path string) string {
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Lstat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "never appeared"
		}
		time.Sleep(50 * time.Millisecond)
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}
