package natstransport

import (
	"bufio"
	"encoding/json"
	"fmt"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/admin"
	"github.com/caddy-realtime/realtime/broker"
	"github.com/caddy-realtime/realtime/handler"
	"github.com/caddy-realtime/realtime/internal/caddytest"
)

// clusterNode is a broker on the shared stream with its realtime endpoint
// and admin API, as a Caddy node would have them.
type clusterNode struct {
	b        *broker.Broker
	endpoint *httptest.Server
	admin    *httptest.Server
}

func startClusterNode(t *testing.T, port int) *clusterNode {
	t.Helper()
	p := broker.DefaultPolicy()
	p.Heartbeat = 0
	b := broker.New("default", p)
	h := &handler.Handler{Broker: b}
	b.HandleForwarded(handler.KindSubscribe, h.ServeForwarded)
	b.HandleForwarded(admin.KindAdmin, func(_ *broker.Client, payload []byte) []byte { return admin.ServeForwarded(b, payload) })
	tr := New(Config{URLs: []string{url(port)}, Stream: "CLUSTER", Window: time.Minute})
	if err := b.UseTransport(tr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "consuming", tr.Ready)
	n := &clusterNode{b: b, endpoint: httptest.NewServer(h), admin: httptest.NewServer((&admin.Handler{Lookup: func(string) (*broker.Broker, bool) { return b, true }}).HTTPHandler())}
	t.Cleanup(func() { n.endpoint.Close(); n.admin.Close(); b.Close() })
	return n
}

// stream is an SSE client reading frames.
type stream struct {
	resp   *http.Response
	frames chan [3]string // id, event, data
}

func openStream(t *testing.T, url, lastEventID string) *stream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	s := &stream{resp: resp, frames: make(chan [3]string, 1000)}
	t.Cleanup(func() { resp.Body.Close() })
	go func() {
		defer close(s.frames)
		sc := bufio.NewScanner(resp.Body)
		var f [3]string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if f != [3]string{} {
					s.frames <- f
				}
				f = [3]string{}
			case strings.HasPrefix(line, "id:"):
				f[0] = line[3:]
			case strings.HasPrefix(line, "event:"):
				f[1] = line[6:]
			case strings.HasPrefix(line, "data:"):
				f[2] = line[5:]
			}
		}
	}()
	return s
}

func (s *stream) next(t *testing.T) [3]string {
	t.Helper()
	select {
	case f, ok := <-s.frames:
		if !ok {
			t.Fatal("stream ended")
		}
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no frame within 10s")
	}
	return [3]string{}
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A client's requests work on any node: its subscription POST and the admin
// client routes reach the node holding its stream; when that node dies, the
// client resumes on another one with every event it missed.
func TestClusterForwardingAndResume(t *testing.T) {
	port := caddytest.FreePort(t)
	runServer(t, port, t.TempDir())
	a, b := startClusterNode(t, port), startClusterNode(t, port)

	s := openStream(t, a.endpoint.URL, "")
	connect := s.next(t)
	var hello struct{ ClientID string }
	_ = json.Unmarshal([]byte(connect[2]), &hello)
	id := hello.ClientID

	// Subscribed through the other node.
	if code, body := post(t, b.endpoint.URL, `{"clientId":"`+id+`","subscriptions":["posts/*"]}`); code != http.StatusNoContent {
		t.Fatalf("subscription POST on the other node: %d %s", code, body)
	}
	if code, _ := post(t, b.endpoint.URL, `{"clientId":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","subscriptions":["posts/*"]}`); code != http.StatusNotFound {
		t.Errorf("unknown client: %d, want 404 as PocketBase", code)
	}
	resp, err := http.Get(b.admin.URL + "/realtime/clients/" + id)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(info), `"posts/*"`) {
		t.Errorf("admin GET of the client on the other node: %d %s", resp.StatusCode, info)
	}

	publish := func(n *clusterNode, i int) {
		t.Helper()
		code, body := post(t, n.admin.URL+"/realtime/events", fmt.Sprintf(`{"action":"create","collection":"posts","record":{"id":"r%d"}}`, i))
		if code != http.StatusOK {
			t.Fatalf("publish %d: %d %s", i, code, body)
		}
	}
	publish(b, 1)
	first := s.next(t)
	if !strings.Contains(first[2], `"id":"r1"`) {
		t.Fatalf("first event: %v", first)
	}

	// Node a dies (its stream and connection to NATS go away without a
	// goodbye); events published meanwhile on b; the client comes back to b.
	a.endpoint.CloseClientConnections()
	a.endpoint.Close()
	a.b.Transport().Close()
	for i := 2; i <= 4; i++ {
		publish(b, i)
	}
	r := openStream(t, b.endpoint.URL, first[0])
	hello2 := r.next(t)
	if hello2[2] != `{"clientId":"`+id+`","resumed":true}` {
		t.Fatalf("PB_CONNECT on the other node: %q", hello2[2])
	}
	for i := 2; i <= 4; i++ {
		f := r.next(t)
		if !strings.Contains(f[2], fmt.Sprintf(`"id":"r%d"`, i)) {
			t.Fatalf("replayed frame %d: %v", i, f)
		}
	}
	publish(b, 5)
	if f := r.next(t); !strings.Contains(f[2], `"id":"r5"`) {
		t.Fatalf("live frame after the resume: %v", f)
	}
}

// GET /realtime/clients and /realtime/stats on any node show the whole
// cluster; ?scope=node shows one node.
func TestClusterListsAndStats(t *testing.T) {
	port := caddytest.FreePort(t)
	runServer(t, port, t.TempDir())
	a, b := startClusterNode(t, port), startClusterNode(t, port)
	openStream(t, a.endpoint.URL, "").next(t)
	openStream(t, a.endpoint.URL, "").next(t)
	openStream(t, b.endpoint.URL, "").next(t)
	get := func(url string) map[string]any {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
		}
		return v
	}
	list := get(b.admin.URL + "/realtime/clients")
	clients, _ := list["clients"].([]any)
	if list["total"] != 3.0 || len(clients) != 3 || list["nodes"] != 2.0 {
		t.Errorf("cluster list: %v", list)
	}
	nodes := map[any]int{}
	for _, c := range clients {
		nodes[c.(map[string]any)["node"]]++
	}
	if nodes[a.b.Node()] != 2 || nodes[b.b.Node()] != 1 {
		t.Errorf("clients by node: %v", nodes)
	}
	if one := get(b.admin.URL + "/realtime/clients?scope=node"); one["total"] != 1.0 {
		t.Errorf("scope=node list: %v", one)
	}
	stats := get(a.admin.URL + "/realtime/stats")
	byNode, _ := stats["nodes"].(map[string]any)
	if len(byNode) != 2 || stats["clients"] != 3.0 {
		t.Errorf("cluster stats: clients %v, nodes %d: %v", stats["clients"], len(byNode), stats)
	}
}

// A custom message's {"delivered":N} counts the clients of every node.
func TestClusterMessageDelivered(t *testing.T) {
	port := caddytest.FreePort(t)
	runServer(t, port, t.TempDir())
	a, b := startClusterNode(t, port), startClusterNode(t, port)
	var streams []*stream
	for _, n := range []*clusterNode{a, b, b} {
		s := openStream(t, n.endpoint.URL, "")
		var hello struct{ ClientID string }
		_ = json.Unmarshal([]byte(s.next(t)[2]), &hello)
		if code, body := post(t, n.endpoint.URL, `{"clientId":"`+hello.ClientID+`","subscriptions":["news"]}`); code != http.StatusNoContent {
			t.Fatalf("subscribe: %d %s", code, body)
		}
		streams = append(streams, s)
	}
	code, body := post(t, a.admin.URL+"/realtime/messages", `{"name":"news","data":{"x":1}}`)
	if code != http.StatusOK || body != `{"delivered":3}`+"\n" && body != `{"delivered":3}` {
		t.Fatalf("message: %d %s, want delivered 3 (one client on this node, two on the other)", code, body)
	}
	for _, s := range streams {
		if f := s.next(t); f[1] != "news" {
			t.Errorf("frame %v", f)
		}
	}
}

// Nodes sharing a stream with different options: each logs the names of
// the options that differ (never their values).
func TestClusterConfigMismatchLogged(t *testing.T) {
	port := caddytest.FreePort(t)
	runServer(t, port, t.TempDir())
	a, b := startClusterNode(t, port), startClusterNode(t, port)
	core, logs := observer.New(zap.WarnLevel)
	p := *a.b.Policy()
	p.Logger = zap.New(core)
	a.b.SetPolicy(&p)
	b.b.SetClusterConfig(`{"max_clients":10,"auth":{"jwt":{"secret":"first-secret-value"}}}`)
	a.b.SetClusterConfig(`{"max_clients":10,"auth":{"jwt":{"secret":"second-secret-value"}},"wildcard":false}`)
	waitFor(t, "the warning", func() bool { return logs.Len() > 0 })
	entry := logs.All()[0]
	got := fmt.Sprint(entry.ContextMap()["options"])
	if got != "[auth wildcard]" || strings.Contains(fmt.Sprint(entry.ContextMap()), "secret-value") {
		t.Errorf("warning names %s (%v); want [auth wildcard] and no values", got, entry.ContextMap())
	}
}
