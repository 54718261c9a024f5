package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	if len(found) != 1 {
		c.t.Fatalf("%d nodes hold client %s, want 1", len(found), clientID)
	}
	return found[0]
}

// subscribe sets topics on the node holding the stream (forwarding is tested
// apart: TestForwardedThroughLB).
func (c *testCluster) subscribe(s *sseClient, topics ...string) {
	c.t.Helper()
	n := c.nodes[c.holder(s.id)]
	if r := subscribe(c.t, n.url(""), s.id, topics...); r.status != http.StatusNoContent {
		c.t.Fatalf("subscribe %s on %s: %d %s", s.name, n.name, r.status, r.body)
	}
}

// sessionBucket is the JetStream KV bucket of the broker's sessions.
const sessionBucket = "realtime_" + brokerName + "_sessions"

// waitSession waits until the client's session is in the cluster's session
// bucket, where another node resumes it from.
func (c *testCluster) waitSession(clientID string) {
	c.t.Helper()
	nc, err := nats.Connect(strings.Join(c.nats.urls(), ","))
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	var last error
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		kv, err := js.KeyValue(ctx, sessionBucket)
		if err == nil {
			_, err = kv.Get(ctx, clientID)
		}
		cancel()
		if err == nil {
			return
		}
		if !errors.Is(err, last) {
			last = err
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("client %s's session never reached the bucket %s: %v", clientID, sessionBucket, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitSessionBuckets waits until every node has the session bucket open: a
// session a node shares before that is not stored (natstransport drops it),
// and opening the bucket can take a node of a cluster just formed more than
// one try (see the report of issue 11: ~10-20 s).
func (c *testCluster) waitSessionBuckets() {
	c.t.Helper()
	for _, n := range c.nodes {
		waitFor(c.t, 60*time.Second, n.name+" opening the session bucket", func() bool {
			logs := n.logs.String()
			return strings.Contains(logs, "consuming the NATS JetStream stream") &&
				(!strings.Contains(logs, "the session bucket is unavailable") || strings.Contains(logs, "the session bucket is open"))
		})
	}
}
