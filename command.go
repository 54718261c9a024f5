package realtime

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/caddy-realtime/realtime/pbimport"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "realtime",
		Short: "Tools of the realtime module (caddy-realtime)",
		Long: `
Tools of the realtime module. See 'caddy realtime import-pocketbase --help'.
`,
		CobraFunc: func(cmd *cobra.Command) {
			imp := &cobra.Command{
				Use:   "import-pocketbase --url <pocketbase> [--token <superuser token> | --email <email> --password <password>]",
				Short: "Prints the realtime block with a PocketBase's access rules",
				Long: `
Reads the collections of a running PocketBase (v0.23 or later) with a superuser's
credentials and prints the realtime Caddyfile block that enforces the same
realtime access: an auth block that signs clients in through PocketBase's
auth-refresh, the superusers rule, and per collection its list and view rules
and hidden fields.

Rules that need PocketBase's database (@collection.*, back-relations, relation
expansion such as author.name, @request.body.*, functions) are printed
commented out with the reason, and that rule stays unset: superusers only.
A summary of them goes to stderr.

The token comes from --token or $POCKETBASE_TOKEN; or give --email and
--password (or $POCKETBASE_EMAIL and $POCKETBASE_PASSWORD) of a superuser.
Exits 1 when PocketBase cannot be reached or refuses the credentials.
`,
				RunE: caddycmd.WrapCommandFuncForCobra(cmdImportPocketBase),
			}
			imp.Flags().String("url", "", "PocketBase's base URL (default $POCKETBASE_URL or http://127.0.0.1:8090)")
			imp.Flags().String("token", "", "a superuser's token (default $POCKETBASE_TOKEN)")
			imp.Flags().String("email", "", "a superuser's email, to sign in (default $POCKETBASE_EMAIL)")
			imp.Flags().String("password", "", "that superuser's password (default $POCKETBASE_PASSWORD)")
			imp.Flags().String("auth-url", "", "PocketBase's base URL as Caddy reaches it, if not --url")
			imp.Flags().String("auth-collection", "", "the auth collection whose tokens sign clients in (default users, else the first)")
			imp.Flags().String("matcher", "/api/realtime", "the realtime directive's path matcher")
			cmd.AddCommand(imp)
		},
	})
}

func cmdImportPocketBase(fl caddycmd.Flags) (int, error) {
	flagOrEnv := func(name, env, def string) string {
		if v := fl.String(name); v != "" {
			return v
		}
		if v := os.Getenv(env); v != "" {
			return v
		}
		return def
	}
	pb := &pbimport.Client{
		URL:   strings.TrimSuffix(flagOrEnv("url", "POCKETBASE_URL", "http://127.0.0.1:8090"), "/"),
		Token: flagOrEnv("token", "POCKETBASE_TOKEN", ""),
		HTTP:  &http.Client{Timeout: 30 * time.Second},
	}
	ctx := context.Background()
	if email := flagOrEnv("email", "POCKETBASE_EMAIL", ""); email != "" && pb.Token == "" {
		if err := pb.Login(ctx, email, flagOrEnv("password", "POCKETBASE_PASSWORD", "")); err != nil {
			return caddy1(err)
		}
	}
	if pb.Token == "" {
		return caddy1(errors.New("no superuser credentials: pass --token (or set POCKETBASE_TOKEN), or --email and --password"))
	}
	cols, err := pb.Collections(ctx)
	if err != nil {
		return caddy1(err)
	}
	res, err := pbimport.Caddyfile(cols, pbimport.Options{
		PocketBaseURL:  flagOrEnv("auth-url", "", pb.URL),
		AuthCollection: fl.String("auth-collection"),
		Matcher:        fl.String("matcher"),
		Source:         pb.URL,
	})
	if err != nil {
		return caddy1(err)
	}
	fmt.Print(res.Caddyfile)
	if n := len(res.Skipped); n > 0 {
		fmt.Fprintf(os.Stderr, "%d rule(s) need PocketBase's database and were left out (superusers only):\n", n)
		for _, s := range res.Skipped {
			fmt.Fprintf(os.Stderr, "  %s\n", s)
		}
	}
	return 0, nil
}

func caddy1(err error) (int, error) { return 1, fmt.Errorf("import-pocketbase: %w", err) }
