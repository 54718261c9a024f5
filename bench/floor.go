//go:build linux

package bench

import (
	"io"
	"os"
	"path/filepath"
)

// KindFloor is the least an idle stream can cost in Caddy: Caddy v2.11.9
// with its standard modules and one handler, `block`, that writes a
// PB_CONNECT-shaped frame, flushes, answers POSTs with 204, and otherwise
// waits for the client to go away. Nothing of ours runs in it; what it
// costs per stream is Caddy's and Go's (net/http, x/net/http2, crypto/tls)
// share of ours and Mercure's figures.
const KindFloor Kind = "caddy-floor"

// floorSite is the floor's site body.
const floorSite = "\troute /api/realtime {\n\t\tblock\n\t}\n"

// floorMain is the floor binary's source. It is built in a scratch module
// under bench/.work (as Mercure is), so that no package of this module
// imports Caddy but the root one.
const floorMain = `// Command caddy-floor is Caddy with a handler that only holds streams open.
package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

func init() {
	caddy.RegisterModule(Block{})
	httpcaddyfile.RegisterHandlerDirective("block", func(httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		return Block{}, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("block", httpcaddyfile.Before, "respond")
}

// Block writes one frame and holds the stream until the client leaves.
type Block struct{}

func (Block) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.block", New: func() caddy.Module { return new(Block) }}
}

func (Block) UnmarshalCaddyfile(*caddyfile.Dispenser) error { return nil }

func (Block) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method == http.MethodPost {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "id:%d\nevent:PB_CONNECT\ndata:{\"clientId\":\"%d\"}\n\n", time.Now().UnixNano(), time.Now().UnixNano())
	_ = http.NewResponseController(w).Flush()
	<-r.Context().Done()
	return nil
}

func main() { caddycmd.Main() }
`

// BuildCaddyFloor builds the floor into out, in the scratch module dir, with
// the Caddy version (and go.sum) of this repository's go.mod.
func BuildCaddyFloor(repoRoot, dir, out string, log io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(floorMain), 0o644); err != nil {
		return err
	}
	mod := "module benchfloor\n\ngo 1.26.0\n\nrequire github.com/caddyserver/caddy/v2 v2.11.9\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(mod), 0o644); err != nil {
		return err
	}
	sum, err := os.ReadFile(filepath.Join(repoRoot, "go.sum"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		return err
	}
	env := []string{"GOWORK=off", "GOFLAGS=-mod=mod"}
	return run(log, dir, env, "go", "build", "-o", out, ".")
}
