// Command caddy is Caddy with its standard modules plus the realtime module.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-realtime/realtime"
)

func main() {
	caddycmd.Main()
}
