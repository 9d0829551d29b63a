package containertest

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/em340-bridge/em340-bridge/internal/testenv"
)

// What these tests need, and what they do without it (testenv.Missing: a
// skip on a developer's machine, a failure under CI):
//   - a Docker engine that answers `docker info` (.ci/engine start runs one);
//   - Debian's docker client /usr/bin/docker (it runs BuildKit itself), or
//     $EM340_DOCKER;
//   - docker compose v2: $EM340_COMPOSE, or <user cache>/em340-bridge/
//     docker-compose-<version> (.ci/engine start builds it), or a `docker
//     compose` plugin;
//   - Debian's mosquitto (mosquitto, mosquitto-clients) and busybox-static,
//     from which a Mosquitto image is made: no registry is reachable.
// Everything else, the images included, is built here from the tree.

// composeVersion is the docker compose release .ci/engine builds.
const composeVersion = "v2.40.3"

// hang bounds a wait for something that normally takes seconds.
const hang = 90 * time.Second

// engine is a Docker engine, driven through its CLI.
type engine struct {
	docker  string   // the client
	compose []string // docker compose v2, as a command line
}

func newEngine(t *testing.T) *engine {
	t.Helper()
	docker := os.Getenv("EM340_DOCKER")
	if docker == "" {
		docker = "/usr/bin/docker"
	}
	if _, err := os.Stat(docker); err != nil {
		testenv.Missing(t, "docker client", "apt-get install -y docker.io, or set EM340_DOCKER")
	}
	if out, err := exec.Command(docker, "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		testenv.Missing(t, "dockerd", fmt.Sprintf("no engine answers (%v: %s); start one with .ci/engine start", err, bytes.TrimSpace(out)))
	}
	e := &engine{docker: docker}
	if c := os.Getenv("EM340_COMPOSE"); c != "" {
		e.compose = []string{c}
	} else if dir, err := os.UserCacheDir(); err == nil {
		if c := filepath.Join(dir, "em340-bridge", "docker-compose-"+composeVersion); isFile(c) {
			e.compose = []string{c}
		}
	}
	if e.compose == nil {
		if exec.Command(docker, "compose", "version").Run() == nil {
			e.compose = []string{docker, "compose"}
		}
	}
	return e
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// run runs a docker command and returns its trimmed standard output.
func (e *engine) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.output(t.Context(), args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (e *engine) output(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.docker, args...)
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("docker %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.TrimSpace(string(out)), nil
}

// name is a name no other run of these tests uses at the same time.
func name(kind string) string {
	return fmt.Sprintf("em340ct-%s-%d-%d", kind, os.Getpid(), time.Now().UnixNano()%1e6)
}

// start runs a container in the background (docker run -d args…) and
// removes it when the test ends, even one that was created but failed to
// start; it returns the container's name.
func (e *engine) start(t *testing.T, kind string, args ...string) string {
	t.Helper()
	container := name(kind)
	t.Cleanup(func() {
		out, err := exec.Command(e.docker, "rm", "--force", container).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "No such container") {
			t.Errorf("removing container %s: %v: %s", container, err, out)
		}
	})
	e.run(t, append([]string{"run", "--detach", "--name", container}, args...)...)
	return container
}

// removeImage untags image when the test ends; its layers stay cached.
func (e *engine) removeImage(t *testing.T, image string) {
	t.Cleanup(func() {
		if out, err := exec.Command(e.docker, "image", "rm", "--force", image).CombinedOutput(); err != nil {
			t.Errorf("removing image %s: %v: %s", image, err, out)
		}
	})
}

// bridgeImage builds the root Dockerfile the way the release workflow does
// (BINARY=dist), from a context holding the Dockerfile and a dist/ with the
// binary the host Go builds: no base image is needed.
func (e *engine) bridgeImage(t *testing.T, version string) string {
	t.Helper()
	root := testenv.RepoRoot()
	ctxDir := t.TempDir()
	copyFile(t, filepath.Join(root, "Dockerfile"), filepath.Join(ctxDir, "Dockerfile"), 0o644)
	dist := filepath.Join(ctxDir, "dist")
	arch := runtime.GOARCH
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version,
		"-o", filepath.Join(dist, "em340-bridge_linux_"+arch), "./cmd/em340-bridge")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	rootfs := filepath.Join(dist, "rootfs")
	writeFile(t, filepath.Join(rootfs, "etc", "passwd"), "nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n", 0o644)
	writeFile(t, filepath.Join(rootfs, "etc", "group"), "nonroot:x:65532:\n", 0o644)
	copyFile(t, "/etc/ssl/certs/ca-certificates.crt", filepath.Join(rootfs, "etc", "ssl", "certs", "ca-certificates.crt"), 0o644)
	tmp := filepath.Join(rootfs, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o1777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}

	image := name("bridge") + ":" + version
	e.run(t, "build", "--build-arg", "BINARY=dist", "--build-arg", "VERSION="+version, "-t", image, ctxDir)
	e.removeImage(t, image)
	return image
}

// mosquittoImage makes an image laid out like eclipse-mosquitto's (the
// broker in /usr/sbin, its clients in /usr/bin, /mosquitto/{config,data},
// user mosquitto 1883, a POSIX shell) from this machine's Debian packages:
// the binaries, the libraries ldd names, and busybox for the shell.
func (e *engine) mosquittoImage(t *testing.T) string {
	t.Helper()
	bins := []string{"/usr/sbin/mosquitto", "/usr/bin/mosquitto_sub", "/usr/bin/mosquitto_passwd"}
	for _, b := range bins {
		if !isFile(b) {
			testenv.Missing(t, b, "apt-get install -y mosquitto mosquitto-clients")
		}
	}
	if !isFile("/bin/busybox") {
		testenv.Missing(t, "/bin/busybox", "apt-get install -y busybox-static")
	}
	libs := map[string]bool{}
	lib := regexp.MustCompile(`(?m)(?:=> )?(/\S+) \(0x`)
	for _, b := range bins {
		out, err := exec.Command("ldd", b).Output()
		if err != nil {
			t.Fatalf("ldd %s: %v", b, err)
		}
		for _, m := range lib.FindAllStringSubmatch(string(out), -1) {
			libs[m[1]] = true
		}
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(path string, mode int64, uid int) {
		must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: path + "/", Mode: mode, Uid: uid, Gid: uid}))
	}
	file := func(path string, mode int64, data []byte) {
		must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: mode, Size: int64(len(data))}))
		_, err := tw.Write(data)
		must(t, err)
	}
	hostFile := func(path string) {
		data, err := os.ReadFile(path) // through symlinks: the image gets the file itself
		must(t, err)
		file(strings.TrimPrefix(path, "/"), 0o755, data)
	}
	made := map[string]bool{}
	parents := func(path string) {
		var chain []string
		for d := filepath.Dir(strings.TrimPrefix(path, "/")); d != "." && !made[d]; d = filepath.Dir(d) {
			chain = append(chain, d)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			dir(chain[i], 0o755, 0)
			made[chain[i]] = true
		}
	}
	for _, p := range append(bins, "/bin/busybox", "/etc/x", "/mosquitto/x") {
		parents(p)
	}
	for _, b := range bins {
		hostFile(b)
	}
	for l := range libs {
		parents(l)
		hostFile(l)
	}
	hostFile("/bin/busybox")
	for _, applet := range []string{"sh", "cat", "chmod", "chown", "echo", "mkdir", "mv", "od", "rm", "tr", "touch", "head", "ls"} {
		must(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777}))
	}
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nmosquitto:x:1883:1883:mosquitto:/var/empty:/sbin/nologin\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nmosquitto:x:1883:\n"))
	dir("mosquitto/config", 0o755, 1883)
	dir("mosquitto/data", 0o755, 1883)
	dir("tmp", 0o1777, 0)
	must(t, tw.Close())

	image := name("mosquitto") + ":2"
	cmd := exec.CommandContext(t.Context(), e.docker, "import",
		"--change", `CMD ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]`,
		"--change", "ENV PATH=/usr/sbin:/usr/bin:/bin",
		"-", image)
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker import: %v\n%s", err, out)
	}
	e.removeImage(t, image)
	return image
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, []byte(content), mode))
	must(t, os.Chmod(path, mode))
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(from)
	must(t, err)
	writeFile(t, to, string(data), mode)
}

// inspect decodes docker inspect of one object.
func (e *engine) inspect(t *testing.T, kind, id string, into any) {
	t.Helper()
	out := e.run(t, kind, "inspect", id)
	var list []json.RawMessage
	must(t, json.Unmarshal([]byte(out), &list))
	if len(list) != 1 {
		t.Fatalf("docker %s inspect %s: %d results", kind, id, len(list))
	}
	must(t, json.Unmarshal(list[0], into))
}

type containerState struct {
	State struct {
		Running bool
		Pid     int
		Health  *struct {
			Status string
			Log    []struct {
				ExitCode int
				Output   string
			}
		}
	}
}

// waitHealth waits until the container's health is want.
func (e *engine) waitHealth(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.Now().Add(hang)
	var st containerState
	for time.Now().Before(deadline) {
		e.inspect(t, "container", id, &st)
		if st.State.Health != nil && st.State.Health.Status == want {
			return
		}
		if !st.State.Running {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	logs, _ := exec.Command(e.docker, "logs", "--tail", "30", id).CombinedOutput()
	t.Fatalf("container health %+v, running %v; want %s\nlogs:\n%s", st.State.Health, st.State.Running, want, logs)
}

// processUID is the real uid of a host process, from /proc.
func processUID(t *testing.T, pid int) int {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no Uid line in /proc/%d/status", pid)
	}
	uid, _ := strconv.Atoi(string(m[1]))
	return uid
}

// freePort is a TCP port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// readLine reads one line from r, failing the test after hang.
func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	type result struct {
		line string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		line, err := r.ReadString('\n')
		ch <- result{strings.TrimSpace(line), err}
	}()
	select {
	case res := <-ch:
		if res.err != nil && !errors.Is(res.err, io.EOF) {
			t.Fatal(res.err)
		}
		return res.line
	case <-time.After(hang):
		t.Fatal("no line within the hang bound")
		return ""
	}
}
