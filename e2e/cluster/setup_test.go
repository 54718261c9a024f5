package cluster

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// nodeCaddyfile is one Caddy node of the cluster: broker "cluster" on the
// NATS stream, three replicas.
const nodeCaddyfile = `{
	admin {ADMIN}
	auto_https off
	persist_config off
}
http://127.0.0.1:{PORT} {
	realtime /api/realtime {
		broker cluster # brokerName
		heartbeat 1s
		resume_window 2m
		transport nats {URLS} {
			replicas 3
			storage file
		}
		collection posts {
			list_rule ""
			view_rule ""
		}
	}
}
`

// lbCaddyfile is the load balancer: round robin over the nodes, retrying
// another node when one does not answer, streams flushed at once.
const lbCaddyfile = `{
	admin {ADMIN}
	auto_https off
	persist_config off
}
http://127.0.0.1:{PORT} {
	reverse_proxy {UPSTREAMS} {
		lb_policy round_robin
		lb_try_duration 5s
		lb_try_interval 100ms
		fail_duration 10s
		flush_interval -1
	}
}
`

type testCluster struct {
	t     testing.TB
	nats  *natsCluster
	nodes []*caddyProc
	lb    *caddyProc
}

// startCluster starts 3 NATS servers, 3 Caddy nodes on them and the load
// balancer, and waits until every node publishes through JetStream.
func startCluster(t testing.TB) *testCluster {
	t.Helper()
	c := &testCluster{t: t, nats: startNATSCluster(t, 3)}
	cfg := strings.ReplaceAll(nodeCaddyfile, "{URLS}", strings.Join(c.nats.urls(), " "))
	var upstreams []string
	for i := range 3 {
		n := startCaddy(t, fmt.Sprintf("node%d", i+1), cfg)
		c.nodes = append(c.nodes, n)
		upstreams = append(upstreams, fmt.Sprintf("127.0.0.1:%d", n.port))
	}
	c.lb = startCaddy(t, "lb", strings.ReplaceAll(lbCaddyfile, "{UPSTREAMS}", strings.Join(upstreams, " ")))
	for _, n := range c.nodes {
		c.waitPublishes(n)
	}
	return c
}

// waitPublishes waits until a custom message (which goes through the stream
// and answers once this node consumed it) succeeds on n.
func (c *testCluster) waitPublishes(n *caddyProc) {
	c.t.Helper()
	var last reply
	deadline := time.Now().Add(45 * time.Second)
	for {
		r, err := do(http.MethodPost, n.adminURL("/realtime/messages"), `{"name":"warmup","data":1}`)
		if err == nil && r.status == http.StatusOK {
			return
		}
		last = r
		if time.Now().After(deadline) {
			c.t.Fatalf("%s never published through JetStream: %d %s (%v)\n%s", n.name, last.status, last.body, err, n.logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// client opens a stream on node i (or through the load balancer when i < 0)
// and subscribes it to posts on the node holding it.
func (c *testCluster) client(name string, i int) *sseClient {
	c.t.Helper()
	base := c.lb.url("")
	if i >= 0 {
		base = c.nodes[i].url("")
	}
	s := openStream(c.t, name, base+"/api/realtime", "")
	c.subscribe(s, "posts")
	return s
}

// holder is the index of the node holding the client's stream.
func (c *testCluster) holder(clientID string) int {
	c.t.Helper()
	var found []int
	for i, n := range c.nodes {
		if n.holds(clientID) {
			found = append(found, i)
		}
	}
	if len(found) == 0 {
		c.t.Fatalf("no node holds client %s", clientID)
	}
	// Once requests about a client are forwarded between nodes, every node
	// answers for it, and any of them takes its subscription POST.
	return found[0]
}

// subscribe sets topics on the node holding the stream: until subscription
// POSTs are forwarded between nodes (issue 11 item 3), a POST through the
// load balancer may land on another node.
func (c *testCluster) subscribe(s *sseClient, topics ...string) {
	c.t.Helper()
	n := c.nodes[c.holder(s.id)]
	if r := subscribe(c.t, n.url(""), s.id, topics...); r.status != http.StatusNoContent {
		c.t.Fatalf("subscribe %s on %s: %d %s", s.name, n.name, r.status, r.body)
	}
}
