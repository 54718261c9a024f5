// Package admin is the realtime admin API: the site's backend publishes record
// events and custom messages, lists, inspects and disconnects clients, edits
// their state and reads stats. It is plain net/http; the root package mounts
// Handler.Serve into Caddy's admin endpoint as the admin.api.realtime module,
// and HTTPHandler serves it from any other Go server.
package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/caddy-realtime/realtime/forward"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/caddy-realtime/realtime/broker"
)

// Prefix is the path every route lives under.
const Prefix = "/realtime/"

// DefaultBroker is the broker a request without ?broker= selects.
const DefaultBroker = "default"

// DefaultMaxBodyBytes is the request body limit when Handler.MaxBodyBytes is 0.
const DefaultMaxBodyBytes = 16 << 20

// Lookup finds a broker by name ("" means DefaultBroker).
type Lookup func(name string) (*broker.Broker, bool)

// Error is what Serve returns instead of writing an error body; the root
// package turns it into caddy.APIError{HTTPStatus: Code, Err: Err}.
type Error struct {
	Code int
	Err  error
}

func (e Error) Error() string {
	if e.Err == nil {
		return http.StatusText(e.Code)
	}
	return e.Err.Error()
}

func (e Error) Unwrap() error { return e.Err }

func errorf(code int, format string, args ...any) Error {
	return Error{Code: code, Err: fmt.Errorf(format, args...)}
}

// Handler serves every admin route. It holds no state of its own: Caddy rebuilds
// admin modules on each config load, so brokers are looked up per request.
type Handler struct {
	// Lookup finds the broker named by ?broker=.
	Lookup Lookup
	// MaxBodyBytes limits request bodies; larger ones get 413. Default: 16 MiB.
	MaxBodyBytes int64
}

// Routes lists the path patterns to register with Caddy's admin router;
// Serve dispatches everything under them itself.
func Routes() []string { return []string{Prefix} }

// params are the parts of a path that name things.
type params struct {
	client string // /realtime/clients/{client}...
	key    string // /realtime/clients/{client}/state/{key}
}

type handlerFunc func(h *Handler, w http.ResponseWriter, r *http.Request, b *broker.Broker, p params) error

type method struct {
	name  string
	serve handlerFunc
}

// Each route's methods, in the order the Allow header lists them.
var (
	eventsRoute   = []method{{http.MethodPost, (*Handler).postEvents}}
	messagesRoute = []method{{http.MethodPost, (*Handler).postMessage}}
	statsRoute    = []method{{http.MethodGet, (*Handler).getStats}}
	clientsRoute  = []method{{http.MethodGet, (*Handler).listClients}}
	clientRoute   = []method{
		{http.MethodGet, (*Handler).getClient},
		{http.MethodDelete, (*Handler).deleteClient},
	}
	stateRoute = []method{
		{http.MethodGet, (*Handler).getState},
		{http.MethodPut, (*Handler).putState},
		{http.MethodDelete, (*Handler).deleteState},
	}
	stateKeyRoute = []method{
		{http.MethodGet, (*Handler).getStateKey},
		{http.MethodPut, (*Handler).putStateKey},
		{http.MethodDelete, (*Handler).deleteStateKey},
	}
)

// Serve handles one admin request. Errors are returned as Error values, never
// written: Caddy's admin server (or HTTPHandler) writes them as {"error":"..."}.
func (h *Handler) Serve(w http.ResponseWriter, r *http.Request) error {
	methods, p, err := route(r)
	if err != nil {
		return err
	}
	var serve handlerFunc
	for _, m := range methods {
		if m.name == r.Method {
			serve = m.serve
			break
		}
	}
	if serve == nil {
		allow := make([]string, len(methods))
		for i, m := range methods {
			allow[i] = m.name
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s: use %s",
			r.Method, r.URL.Path, strings.Join(allow, " or "))
	}
	b, err := h.broker(r)
	if err != nil {
		return err
	}
	if p.client != "" && !forward.Forwarded(r) && b.Cluster() != nil {
		if _, local := b.Client(p.client); !local {
			if held, err := h.forward(w, r, b, p.client); held || err != nil {
				return err
			}
		}
	}
	return serve(h, w, r, b, p)
}

// KindAdmin names forwarded admin requests about a client.
const KindAdmin = "admin"

// forward serves a request about a client another node holds there.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, b *broker.Broker, id string) (bool, error) {
	body, err := h.readBody(w, r)
	if err != nil {
		return false, err
	}
	answer, held, err := b.Forward(r.Context(), id, KindAdmin, forward.Encode(r, body, ""))
	if err != nil {
		return false, Error{Code: http.StatusServiceUnavailable, Err: fmt.Errorf("asking the cluster about client %q: %w", id, err)}
	}
	if !held {
		r.Body = io.NopCloser(bytes.NewReader(body))
		return false, nil
	}
	return true, forward.Write(w, answer)
}

// ServeForwarded serves an admin request another node forwarded about one of
// b's clients (register it with Broker.HandleForwarded(KindAdmin, ...)).
func ServeForwarded(b *broker.Broker, payload []byte) []byte {
	h := &Handler{Lookup: func(string) (*broker.Broker, bool) { return b, true }}
	return forward.Serve(payload, h.HTTPHandler())
}

// route matches the request path to a route. Path segments are unescaped one
// by one, so a state key may contain "/" as %2F (or as a plain "/": the rest of
// the path after state/ is the key).
func route(r *http.Request) ([]method, params, error) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), Prefix)
	if !ok {
		return nil, params{}, unknownPath(r)
	}
	segs := strings.SplitN(rest, "/", 4)
	var p params
	switch {
	case len(segs) == 1 && segs[0] == "events":
		return eventsRoute, p, nil
	case len(segs) == 1 && segs[0] == "messages":
		return messagesRoute, p, nil
	case len(segs) == 1 && segs[0] == "stats":
		return statsRoute, p, nil
	case len(segs) == 1 && segs[0] == "clients":
		return clientsRoute, p, nil
	case segs[0] != "clients" || segs[1] == "":
		return nil, p, unknownPath(r)
	}
	var err error
	if p.client, err = url.PathUnescape(segs[1]); err != nil {
		return nil, p, errorf(http.StatusBadRequest, "malformed client id in path: %v", err)
	}
	switch {
	case len(segs) == 2:
		return clientRoute, p, nil
	case segs[2] != "state":
		return nil, p, unknownPath(r)
	case len(segs) == 3:
		return stateRoute, p, nil
	case segs[3] == "":
		return nil, p, unknownPath(r)
	}
	if p.key, err = url.PathUnescape(segs[3]); err != nil {
		return nil, p, errorf(http.StatusBadRequest, "malformed state key in path: %v", err)
	}
	return stateKeyRoute, p, nil
}

func unknownPath(r *http.Request) error {
	return errorf(http.StatusNotFound, "unknown path %q: see the realtime admin API routes under %s", r.URL.Path, Prefix)
}

// broker resolves ?broker= (default "default").
func (h *Handler) broker(r *http.Request) (*broker.Broker, error) {
	if h.Lookup == nil {
		return nil, errorf(http.StatusInternalServerError, "realtime admin handler has no broker lookup configured")
	}
	name := r.URL.Query().Get("broker")
	if name == "" {
		name = DefaultBroker
	}
	b, ok := h.Lookup(name)
	if !ok || b == nil {
		return nil, errorf(http.StatusNotFound, "unknown broker %q", name)
	}
	return b, nil
}

// client resolves the {id} of a client route.
func client(b *broker.Broker, id string) (*broker.Client, error) {
	c, ok := b.Client(id)
	if !ok {
		return nil, errorf(http.StatusNotFound, "unknown client %q", id)
	}
	return c, nil
}

// HTTPHandler serves the API as a plain http.Handler, writing errors the way
// Caddy's admin endpoint does: the status and {"error":"..."} as JSON.
func (h *Handler) HTTPHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := h.Serve(w, r)
		if err == nil {
			return
		}
		e := Error{Code: http.StatusInternalServerError, Err: err}
		if !errors.As(err, &e) || e.Code == 0 {
			e.Code = http.StatusInternalServerError
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(e.Code)
		_ = json.NewEncoder(w).Encode(struct {
			Error string `json:"error"`
		}{e.Error()})
	})
}
