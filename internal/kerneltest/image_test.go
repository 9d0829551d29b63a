package kerneltest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/em340-bridge/em340-bridge/internal/testenv"
)

// guestRoot is the Debian packages the guest needs, extracted.
type guestRoot struct {
	dir           string // extracted packages, merged
	kernelVersion string // e.g. 6.1.0-48-amd64
}

// fetchGuestRoot downloads (once, into the user's cache) and extracts the
// kernel, udev and mosquitto packages from the machine's apt sources.
func fetchGuestRoot(t *testing.T) guestRoot {
	t.Helper()
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb", "ldd"} {
		if _, err := exec.LookPath(tool); err != nil {
			testenv.Missing(t, tool, "the rig takes the guest's kernel, udev and mosquitto from Debian packages")
		}
	}
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").CombinedOutput()
	if err != nil {
		t.Fatalf("apt-cache depends linux-image-amd64: %v: %s", err, out)
	}
	m := regexp.MustCompile(`Depends: (linux-image-(6\.1\.0-[0-9]+-amd64))\b`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("apt-cache depends linux-image-amd64 names no linux-image-6.1.0-*-amd64:\n%s", out)
	}
	kernelPkg, version := m[1], m[2]
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	cache = filepath.Join(cache, "em340-bridge-kerneltest")
	root := filepath.Join(cache, "root-"+version)
	if _, err := os.Stat(filepath.Join(root, ".complete")); err == nil {
		return guestRoot{dir: root, kernelVersion: version}
	}
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, pkg := range []string{kernelPkg, "udev", "mosquitto"} {
		found, _ := filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
		if len(found) == 0 {
			cmd := exec.Command("apt-get", "download", pkg)
			cmd.Dir = debs
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("apt-get download %s (run apt-get update first?): %v\n%s", pkg, err, out)
			}
			found, _ = filepath.Glob(filepath.Join(debs, pkg+"_*.deb"))
		}
		if len(found) == 0 {
			t.Fatalf("apt-get download %s left no .deb in %s", pkg, debs)
		}
		files = append(files, found[len(found)-1])
	}
	tmp, err := os.MkdirTemp(cache, "extract-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	for _, f := range files {
		if out, err := exec.Command("dpkg-deb", "-x", f, tmp).CombinedOutput(); err != nil {
			t.Fatalf("dpkg-deb -x %s: %v\n%s", f, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		t.Fatal(err)
	}
	return guestRoot{dir: root, kernelVersion: version}
}

// moduleClosure returns the .ko files (paths relative to the root) for the
// named modules and everything their "depends=" modinfo names, dependencies
// first: the order the guest loads them in. The .deb has no modules.dep
// (depmod makes it at install), so the modinfo sections are read directly.
func moduleClosure(t *testing.T, root guestRoot, names ...string) []string {
	t.Helper()
	modDir := filepath.Join("lib", "modules", root.kernelVersion)
	byName := map[string]string{}
	err := filepath.WalkDir(filepath.Join(root.dir, modDir), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(root.dir, p)
			byName[strings.ReplaceAll(strings.TrimSuffix(d.Name(), ".ko"), "-", "_")] = rel
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	seen := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		name = strings.ReplaceAll(name, "-", "_")
		if seen[name] {
			return
		}
		seen[name] = true
		rel, ok := byName[name]
		if !ok {
			t.Fatalf("module %s is not in linux-image-%s", name, root.kernelVersion)
		}
		f, err := elf.Open(filepath.Join(root.dir, rel))
		if err != nil {
			t.Fatalf("module %s: %v", rel, err)
		}
		defer f.Close()
		sec := f.Section(".modinfo")
		if sec == nil {
			t.Fatalf("module %s has no .modinfo", rel)
		}
		info, err := sec.Data()
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range bytes.Split(info, []byte{0}) {
			if deps, ok := strings.CutPrefix(string(kv), "depends="); ok && deps != "" {
				for _, d := range strings.Split(deps, ",") {
					visit(d)
				}
			}
		}
		order = append(order, rel)
	}
	for _, n := range names {
		visit(n)
	}
	return order
}

// libraries lists the shared libraries ldd says the binaries need, as host
// paths, plus the dynamic loader; the guest gets copies of exactly these.
func libraries(t *testing.T, root guestRoot, bins ...string) []string {
	t.Helper()
	set := map[string]bool{}
	re := regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)
	for _, b := range bins {
		cmd := exec.Command("ldd", filepath.Join(root.dir, b))
		cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+strings.Join([]string{
			filepath.Join(root.dir, "lib/x86_64-linux-gnu"), filepath.Join(root.dir, "usr/lib/x86_64-linux-gnu"),
		}, ":"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ldd %s: %v\n%s", b, err, out)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			line := sc.Text()
			if strings.Contains(line, "not found") {
				t.Fatalf("ldd %s: %s (install the library's package on the host)", b, strings.TrimSpace(line))
			}
			if m := re.FindStringSubmatch(line); m != nil {
				set[m[1]] = true
			}
		}
	}
	var libs []string
	for l := range set {
		libs = append(libs, l)
	}
	sort.Strings(libs)
	return libs
}

// buildStatic builds a package of this module with CGO_ENABLED=0.
func buildStatic(t *testing.T, pkg, out string) {
	t.Helper()
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goTool, "build", "-o", out, pkg)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

// guestFiles is what goes into the initramfs besides the packages' files.
const (
	passwd = "root:x:0:0:root:/root:/bin/sh\nmosquitto:x:101:101::/var/lib/mosquitto:/bin/false\nem340:x:1000:1000::/tmp:/bin/false\n"
	group  = "root:x:0:\ndialout:x:20:em340\nmosquitto:x:101:\nem340:x:1000:\n"
	mqConf = "listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\nuser mosquitto\nlog_dest stdout\n"
)

// writeInitramfs writes an uncompressed newc initramfs (TCG decompresses
// slowly): a usr-merged tree with /init = the guest program, the bridge,
// udevd and its rules, mosquitto, their libraries and the modules.
func writeInitramfs(t *testing.T, root guestRoot, guestBin, bridgeBin, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	c := NewCPIOWriter(w)
	dirs := map[string]bool{}
	mkdir := func(d string) {
		var parts []string
		for _, p := range strings.Split(strings.Trim(d, "/"), "/") {
			parts = append(parts, p)
			full := strings.Join(parts, "/")
			if !dirs[full] {
				dirs[full] = true
				must(t, c.Dir(full, 0o755))
			}
		}
	}
	file := func(name string, perm fs.FileMode, data []byte) {
		mkdir(filepath.Dir(name))
		must(t, c.File(name, perm, data))
	}
	copyFile := func(name, from string, perm fs.FileMode) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		file(name, perm, b)
	}
	for _, d := range []string{"usr/bin", "usr/sbin", "usr/lib/x86_64-linux-gnu", "usr/lib64", "proc", "sys", "dev", "run", "tmp", "mnt", "root", "etc/kerneltest", "var/lib/mosquitto"} {
		mkdir(d)
	}
	for _, l := range []string{"bin", "sbin", "lib", "lib64"} {
		must(t, c.Symlink(l, "usr/"+l))
	}
	must(t, c.CharDevice("dev/console", 0o600, 5, 1))
	copyFile("init", guestBin, 0o755)
	copyFile("usr/bin/em340-bridge", bridgeBin, 0o755)
	copyFile("usr/bin/udevadm", filepath.Join(root.dir, "bin/udevadm"), 0o755)
	mkdir("usr/lib/systemd")
	must(t, c.Symlink("usr/lib/systemd/systemd-udevd", "/bin/udevadm"))
	copyFile("usr/sbin/mosquitto", filepath.Join(root.dir, "usr/sbin/mosquitto"), 0o755)
	rules, _ := filepath.Glob(filepath.Join(root.dir, "lib/udev/rules.d/*.rules"))
	for _, r := range rules {
		copyFile("usr/lib/udev/rules.d/"+filepath.Base(r), r, 0o644)
	}
	for _, lib := range libraries(t, root, "bin/udevadm", "usr/sbin/mosquitto") {
		dst := "usr/lib/x86_64-linux-gnu/" + filepath.Base(lib)
		if strings.Contains(lib, "ld-linux") {
			dst = "usr/lib64/" + filepath.Base(lib)
		}
		copyFile(dst, lib, 0o755)
	}
	mods := moduleClosure(t, root, "virtio_pci", "xhci_pci", "usbserial", "ftdi_sio", "9p", "9pnet_virtio")
	var guestMods []string
	for _, m := range mods {
		dst := "usr/" + m
		copyFile(dst, filepath.Join(root.dir, m), 0o644)
		guestMods = append(guestMods, "/"+dst)
	}
	file("etc/kerneltest/modules", 0o644, []byte(strings.Join(guestMods, "\n")+"\n"))
	file("etc/passwd", 0o644, []byte(passwd))
	file("etc/group", 0o644, []byte(group))
	file("etc/mosquitto.conf", 0o644, []byte(mqConf))
	must(t, c.Close())
	must(t, w.Flush())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (r guestRoot) kernel() string {
	return filepath.Join(r.dir, "boot", fmt.Sprintf("vmlinuz-%s", r.kernelVersion))
}
