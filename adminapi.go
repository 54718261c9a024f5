package realtime

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-realtime/realtime/admin"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI adds the /realtime/ routes to Caddy's admin endpoint: publish
// events, send custom messages, inspect and disconnect clients, read stats.
// It is rebuilt on every config load and holds no state: each request looks
// its broker up in the pool.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.realtime",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes returns the admin routes.
func (AdminAPI) Routes() []caddy.AdminRoute {
	h := &admin.Handler{Lookup: lookupBroker}
	serve := caddy.AdminHandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		err := h.Serve(w, r)
		var ae admin.Error
		if errors.As(err, &ae) {
			return caddy.APIError{HTTPStatus: ae.Code, Err: ae.Err}
		}
		return err
	})
	var routes []caddy.AdminRoute
	for _, pattern := range admin.Routes() {
		routes = append(routes, caddy.AdminRoute{Pattern: pattern, Handler: serve})
	}
	return routes
}

// Interface guard
var _ caddy.AdminRouter = (*AdminAPI)(nil)
