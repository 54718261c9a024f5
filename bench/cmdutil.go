//go:build linux

package bench

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Helpers the bench commands (bench/cmd/...) share.

// LoadAvg is /proc/loadavg's three load averages, "?" where unreadable: the
// reports state how busy the shared machine was.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// RunIn runs name with args in dir, its output to out.
func RunIn(dir string, out io.Writer, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	return cmd.Run()
}

// OutDir is dir made absolute against the working directory.
func OutDir(dir string) string {
	if !filepath.IsAbs(dir) {
		wd, _ := os.Getwd()
		dir = filepath.Join(wd, dir)
	}
	return dir
}

// Setup is what every bench command does first: it finds the repository's
// root, raises the open-files limit (servers started from here inherit it)
// and returns the root and bench/.work, where binaries and runs go.
func Setup() (root, work string, err error) {
	if root, err = RepoRoot(); err != nil {
		return "", "", err
	}
	if err := RaiseFileLimit(); err != nil {
		return "", "", err
	}
	return root, filepath.Join(root, "bench", ".work"), nil
}
