// Package kerneltest is a real-kernel unplug rig: a stock Debian kernel in qemu
// (TCG) with emulated FTDI adapters, hot-unplugged and replugged over QMP while
// em340-bridge instances run inside the guest. The rig itself is the test in
// this package (go test ./internal/kerneltest/); the guest side is
// internal/kerneltest/guest. What is shared between the two lives here: the
// plan the host hands the guest, the results the guest hands back, and a cpio
// writer for the initramfs.
package kerneltest
