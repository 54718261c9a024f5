//go:build linux

package bench

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// RepoRoot is the directory above the working directory holding the
// caddy-realtime go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/caddy-realtime/realtime\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the caddy-realtime repository")
		}
		dir = parent
	}
}

// TreeState is the commit measured, marked +dirty when tracked files outside
// bench/ differ from it (our Caddy is built from the working tree).
func TreeState(root string) string {
	head, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	state := strings.TrimSpace(string(head))
	st, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench").Output()
	if len(strings.TrimSpace(string(st))) > 0 {
		state += "+dirty"
	}
	return state
}
