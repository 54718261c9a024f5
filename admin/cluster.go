package admin

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/caddy-realtime/realtime/broker"
	"github.com/caddy-realtime/realtime/forward"
)

// On several nodes, GET /realtime/clients and /realtime/stats answer for the
// whole cluster: every node answers for itself (?scope=node, or a request
// another node gathered) and the node asked merges the answers.

// nodeHeader names the node that answered a gathered request.
const nodeHeader = "Realtime-Node"

// clusterWide reports whether r asks for the whole cluster.
func clusterWide(r *http.Request, b *broker.Broker) bool {
	return b.Cluster() != nil && !forward.Forwarded(r) && r.URL.Query().Get("scope") != "node"
}

// gather asks every node for path (served there for itself) and returns the
// answers by node.
func gather(r *http.Request, b *broker.Broker, path string) map[string][]byte {
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, path, nil)
	out := map[string][]byte{}
	for _, raw := range b.Gather(r.Context(), KindAdmin, forward.Encode(req, nil, "")) {
		var resp forward.Response
		if json.Unmarshal(raw, &resp) != nil || resp.Status != http.StatusOK {
			continue
		}
		out[resp.Header.Get(nodeHeader)] = resp.Body
	}
	return out
}

// listClusterClients pages through every node's clients, oldest first.
func listClusterClients(w http.ResponseWriter, r *http.Request, b *broker.Broker, offset, limit int) error {
	var all []clientInfo
	total := 0
	nodes := gather(r, b, Prefix+"clients?offset=0&limit="+strconv.Itoa(offset+limit))
	for _, body := range nodes {
		var page struct {
			Total   int          `json:"total"`
			Clients []clientInfo `json:"clients"`
		}
		if json.Unmarshal(body, &page) == nil {
			total += page.Total
			all = append(all, page.Clients...)
		}
	}
	slices.SortStableFunc(all, func(x, y clientInfo) int {
		tx, _ := time.Parse(time.RFC3339Nano, x.ConnectedAt)
		ty, _ := time.Parse(time.RFC3339Nano, y.ConnectedAt)
		return tx.Compare(ty)
	})
	page := all[min(offset, len(all)):min(offset+limit, len(all))]
	if page == nil {
		page = []clientInfo{}
	}
	return writeJSON(w, struct {
		Total   int          `json:"total"`
		Offset  int          `json:"offset"`
		Limit   int          `json:"limit"`
		Nodes   int          `json:"nodes"`
		Clients []clientInfo `json:"clients"`
	}{total, offset, limit, len(nodes), page})
}

// clusterStats sums every node's counters and shows each node's own.
func clusterStats(w http.ResponseWriter, r *http.Request, b *broker.Broker) error {
	nodes := map[string]any{}
	var sum any
	for node, body := range gather(r, b, Prefix+"stats") {
		var v any
		if json.Unmarshal(body, &v) != nil {
			continue
		}
		nodes[node] = v
		sum = add(sum, v)
	}
	out, _ := sum.(map[string]any)
	if out == nil {
		out = map[string]any{}
	}
	out["nodes"] = nodes
	return writeJSON(w, out)
}

// add sums numbers and objects member by member; other values keep the first seen.
func add(x, y any) any {
	switch yv := y.(type) {
	case float64:
		if xv, ok := x.(float64); ok {
			return xv + yv
		}
	case map[string]any:
		xv, ok := x.(map[string]any)
		if !ok {
			xv = map[string]any{}
		}
		for k, v := range yv {
			xv[k] = add(xv[k], v)
		}
		return xv
	}
	if x != nil {
		return x
	}
	return y
}
