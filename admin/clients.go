package admin

import (
	"github.com/caddy-realtime/realtime/forward"
	"net/http"
	"strconv"
	"time"

	"github.com/caddy-realtime/realtime/broker"
)

// Paging of GET /realtime/clients.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// clientInfo is one client as the admin API shows it.
type clientInfo struct {
	ID            string    `json:"id"`
	IP            string    `json:"ip"`
	ConnectedAt   string    `json:"connected_at"`
	Subscriptions []string  `json:"subscriptions"`
	Auth          *authInfo `json:"auth"`
	PendingBytes  int       `json:"pending_bytes"`
	Delivered     uint64    `json:"delivered"`
	Node          string    `json:"node,omitempty"` // the node holding its stream, on several nodes
}

type authInfo struct {
	ID         string `json:"id"`
	Collection string `json:"collection"`
}

func describe(c *broker.Client) clientInfo {
	info := clientInfo{
		ID:            c.ID(),
		IP:            c.IP(),
		ConnectedAt:   c.ConnectedAt().UTC().Format(time.RFC3339Nano),
		Subscriptions: c.Subscriptions(),
		PendingBytes:  c.Pending(),
		Delivered:     c.Delivered(),
	}
	if info.Subscriptions == nil {
		info.Subscriptions = []string{}
	}
	if a := c.Auth(); a != nil {
		info.Auth = &authInfo{ID: a.ID, Collection: a.Collection}
	}
	info.Node = c.Node()
	return info
}

// listClients pages through the clients, oldest first: GET /realtime/clients?limit=&offset=.
func (h *Handler) listClients(w http.ResponseWriter, r *http.Request, b *broker.Broker, _ params) error {
	q := r.URL.Query()
	maxLimit := MaxLimit
	if forward.Forwarded(r) {
		maxLimit = -1 // another node merging pages asks for all it needs
	}
	limit, err := intParam(q.Get("limit"), "limit", DefaultLimit, 1, maxLimit)
	if err != nil {
		return err
	}
	offset, err := intParam(q.Get("offset"), "offset", 0, 0, -1)
	if err != nil {
		return err
	}
	if clusterWide(r, b) {
		return listClusterClients(w, r, b, offset, limit)
	}
	w.Header().Set(nodeHeader, b.Node())
	all := b.Clients()
	page := all[min(offset, len(all)):min(offset+limit, len(all))]
	out := make([]clientInfo, len(page))
	for i, c := range page {
		out[i] = describe(c)
	}
	return writeJSON(w, struct {
		Total   int          `json:"total"`
		Offset  int          `json:"offset"`
		Limit   int          `json:"limit"`
		Clients []clientInfo `json:"clients"`
	}{len(all), offset, limit, out})
}

// intParam parses a query parameter in [lo, hi] (hi < 0: no upper bound); "" gives def.
func intParam(s, name string, def, lo, hi int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || hi >= 0 && n > hi {
		if hi < 0 {
			return 0, errorf(http.StatusBadRequest, "%s must be an integer of at least %d, not %q", name, lo, s)
		}
		return 0, errorf(http.StatusBadRequest, "%s must be an integer from %d to %d, not %q", name, lo, hi, s)
	}
	return n, nil
}

// getClient shows one client and its state: GET /realtime/clients/{id}.
func (h *Handler) getClient(w http.ResponseWriter, _ *http.Request, b *broker.Broker, p params) error {
	c, err := client(b, p.client)
	if err != nil {
		return err
	}
	return writeJSON(w, struct {
		clientInfo
		State map[string]jsonValue `json:"state"`
	}{describe(c), state(c)})
}

// deleteClient ends a client's stream from the server side: DELETE /realtime/clients/{id}.
// The stream's Serve returns broker.ReasonDisconnected.
func (h *Handler) deleteClient(w http.ResponseWriter, _ *http.Request, b *broker.Broker, p params) error {
	c, err := client(b, p.client)
	if err != nil {
		return err
	}
	b.Disconnect(c, broker.ReasonDisconnected)
	return writeJSON(w, struct {
		Disconnected string `json:"disconnected"`
	}{c.ID()})
}

// getStats reports the broker's counters: GET /realtime/stats.
func (h *Handler) getStats(w http.ResponseWriter, r *http.Request, b *broker.Broker, _ params) error {
	if clusterWide(r, b) {
		return clusterStats(w, r, b)
	}
	w.Header().Set(nodeHeader, b.Node())
	return writeJSON(w, b.Stats())
}
