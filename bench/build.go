//go:build linux

package bench

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Mercure and the Caddy it is built with, as BENCH.md prescribes.
const (
	mercureModule = "github.com/dunglas/mercure/caddy@v0.24.2"
	mercureCaddy  = "github.com/caddyserver/caddy/v2@v2.11.9"
)

const mercureMain = `// Command mercure is Caddy with its standard modules and the Mercure hub, for the benchmarks.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
	_ "github.com/dunglas/mercure/caddy"
)

func main() {
	caddycmd.Main()
}
`

// BuildCaddy compiles our Caddy (./cmd/caddy) from the working tree at
// repoRoot into out.
func BuildCaddy(repoRoot, out string, log io.Writer) error {
	fmt.Fprintln(log, "building our caddy from the working tree...")
	if err := run(log, repoRoot, nil, "go", "build", "-o", out, "./cmd/caddy"); err != nil {
		return fmt.Errorf("building our caddy: %w", err)
	}
	return nil
}

// Build compiles our Caddy, PocketBase (with the e2e script) and Mercure
// (in a scratch module under workDir) and returns the binaries.
func Build(repoRoot, workDir string, log io.Writer) (Bins, error) {
	bins := Bins{
		Caddy:      filepath.Join(workDir, "caddy"),
		PocketBase: filepath.Join(repoRoot, "e2e", ".peer", "base"),
		Mercure:    filepath.Join(workDir, "mercure-caddy"),
	}
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return bins, err
	}
	if err := BuildCaddy(repoRoot, bins.Caddy, log); err != nil {
		return bins, err
	}
	fmt.Fprintln(log, "building pocketbase (e2e/scripts/build-pocketbase.sh)...")
	if err := run(log, repoRoot, nil, "bash", filepath.Join(repoRoot, "e2e", "scripts", "build-pocketbase.sh")); err != nil {
		return bins, fmt.Errorf("building pocketbase: %w", err)
	}
	fmt.Fprintln(log, "building mercure in", filepath.Join(workDir, "mercure"), "...")
	if err := buildMercure(filepath.Join(workDir, "mercure"), bins.Mercure, log); err != nil {
		return bins, fmt.Errorf("building mercure: %w", err)
	}
	return bins, nil
}

func buildMercure(dir, out string, log io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(mercureMain), 0o644); err != nil {
		return err
	}
	env := []string{"GOWORK=off", "GOFLAGS=-mod=mod"}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module benchmercure\n\ngo 1.26.0\n"), 0o644); err != nil {
			return err
		}
	}
	sum, _ := os.ReadFile(filepath.Join(dir, "go.sum"))
	if !strings.Contains(string(sum), "github.com/dunglas/mercure/caddy v0.24.2 ") {
		if err := run(log, dir, env, "go", "get", mercureModule, mercureCaddy); err != nil {
			return err
		}
		// The scratch module only: the go get above leaves go.sum without the
		// standard modules' dependencies.
		if err := run(log, dir, env, "go", "mod", "tidy"); err != nil {
			return err
		}
	}
	return run(log, dir, env, "go", "build", "-o", out, ".")
}

func run(log io.Writer, dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	return cmd.Run()
}

// BuildMercure builds Mercure's Caddy into out, in the scratch module dir.
func BuildMercure(dir, out string, log io.Writer) error { return buildMercure(dir, out, log) }
