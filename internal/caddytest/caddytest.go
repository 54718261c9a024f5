// Package caddytest runs a Caddy binary built from this tree as a process of
// its own, for the tests that need one (reloads, `caddy stop`, several
// nodes): on free loopback ports, with its output kept for failures. It runs
// Caddy; it does not import it.
package caddytest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreePort is a free TCP port on 127.0.0.1 (the OS picks it; it is free until
// somebody else binds it).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// SyncBuffer is a bytes.Buffer that a process's output and a test can share.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Expand replaces {ADMIN} with admin and {PORT} with port in a config.
func Expand(config, admin string, port int) string {
	return strings.NewReplacer("{ADMIN}", admin, "{PORT}", fmt.Sprint(port)).Replace(config)
}

// Start runs `bin run --config config` (adapted from a Caddyfile unless the
// file is JSON) with HOME and the XDG directories in dir and its output in
// logs. done is closed when the process has exited; the process is killed
// when t ends.
func Start(t testing.TB, bin, dir, config string, logs *SyncBuffer) (cmd *exec.Cmd, done <-chan struct{}) {
	t.Helper()
	args := []string{"run", "--config", config}
	if !strings.HasSuffix(config, ".json") {
		args = append(args, "--adapter", "caddyfile")
	}
	cmd = exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	return cmd, exited
}

// Launch is Start, then waits until GET http://admin+probe answers 200 and
// the site's port takes connections (the admin endpoint answers before the
// site listens). A start-up that fails or takes longer than timeout fails t,
// naming the process.
func Launch(t testing.TB, name, bin, dir, config, admin string, port int, probe string, timeout time.Duration, logs *SyncBuffer) (cmd *exec.Cmd, done <-chan struct{}) {
	t.Helper()
	cmd, exited := Start(t, bin, dir, config, logs)
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + admin + probe)
		if err == nil {
			resp.Body.Close()
			if conn, derr := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); resp.StatusCode == http.StatusOK && derr == nil {
				conn.Close()
				return cmd, exited
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited during start-up:\n%s", name, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not become ready: %v\n%s", name, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Binary is the Caddy to run: $CADDY_BIN when set (built from this tree
// already, e.g. e2e/.bin/caddy), or pkg (the path of cmd/caddy from the test's
// directory) built into dir.
func Binary(dir, pkg string) (string, error) {
	if bin := os.Getenv("CADDY_BIN"); bin != "" {
		return bin, nil
	}
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, pkg)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building %s: %w", pkg, err)
	}
	return bin, nil
}
