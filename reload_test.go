package realtime

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
)

const publishedOnlyCaddyfile = `{
	admin {ADMIN}
	auto_https off
	persist_config off
}
http://127.0.0.1:{PORT} {
	realtime /api/realtime {
		collection posts {
			list_rule "LISTRULE"
			view_rule "status = 'published'"
		}
	}
EXTRA
}
`

func publishedOnly(listRule, extra string) string {
	return strings.NewReplacer("LISTRULE", listRule, "EXTRA", extra).Replace(publishedOnlyCaddyfile)
}

// A config load that fails must not change what running streams receive: the
// new policy only takes effect when Caddy commits the config (the realtime
// app's Start), never from a handler's Provision.
func TestCaddyFailedLoadKeepsRules(t *testing.T) {
	p := startCaddy(t, publishedOnly("status = 'published'", ""))
	guest := openStream(t, http.DefaultClient, p.url("/api/realtime"))
	id := guest.connect(t)
	if r := p.subscribe(http.DefaultClient, p.url(""), id, "posts/*"); r.status != http.StatusNoContent {
		t.Fatalf("subscribe: %d %s", r.status, r.body)
	}

	// A port in use makes the http app's Start fail, possibly after the
	// realtime app started (Caddy starts apps in map order): then Stop must
	// put the running policy back.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	failing := map[string]string{
		"a handler that fails to provision": `	reverse_proxy /upstream/* 127.0.0.1:9 {
		transport http {
			tls_client_auth /nonexistent/client.pem /nonexistent/client.key
		}
	}`,
		"an app that fails to start": fmt.Sprintf("}\nhttp://%s {\n\trespond ok", busy.Addr()),
	}
	for name, extra := range failing {
		for round := range 3 {
			r := p.adminDo(http.MethodPost, "/load", "text/caddyfile", p.expand(publishedOnly("", extra)))
			if r.status == http.StatusOK {
				t.Fatalf("%s: the load was accepted", name)
			}
			draft := fmt.Sprintf(`{"action":"create","collection":"posts","record":{"id":"d%d","status":"draft"}}`, round)
			pub := fmt.Sprintf(`{"action":"create","collection":"posts","record":{"id":"p%d","status":"published"}}`, round)
			p.publish(draft, 1)
			p.publish(pub, 1)
			if f := guest.next(t); !strings.Contains(f, fmt.Sprintf(`"id":"p%d"`, round)) {
				t.Fatalf("%s (round %d): after a refused load the guest received %q, want only the published record", name, round, f)
			}
		}
	}

	// A load that succeeds does change the rules.
	p.load(publishedOnly("", ""))
	p.publish(`{"action":"create","collection":"posts","record":{"id":"d9","status":"draft"}}`, 1)
	if f := guest.next(t); !strings.Contains(f, `"id":"d9"`) {
		t.Fatalf("after a good load the guest received %q, want the draft", f)
	}
}

// One broker has one policy: two handlers naming it with different access
// options fail the load, naming what differs.
func TestCaddyHandlersDisagreeingOnBroker(t *testing.T) {
	p := startCaddy(t, publishedOnly("status = 'published'", ""))
	second := `	realtime /other/realtime {
		collection posts {
			list_rule ""
		}
	}`
	r := p.adminDo(http.MethodPost, "/load", "text/caddyfile", p.expand(publishedOnly("status = 'published'", second)))
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, `two realtime handlers use broker \"default\" with different options`) ||
		!strings.Contains(r.body, `collections:`) {
		t.Fatalf("load of disagreeing handlers: %d %s", r.status, r.body)
	}
	// Handlers that agree share the broker.
	same := `	realtime /other/realtime {
		collection posts {
			list_rule "status = 'published'"
			view_rule "status = 'published'"
		}
	}`
	p.load(publishedOnly("status = 'published'", same))
	// A fresh connection: a kept-alive one may have been closed by the reload.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	s := openStream(t, fresh, p.url("/other/realtime"))
	id := s.connect(t)
	if r := p.subscribe(fresh, p.url(""), id, "posts/*"); r.status != http.StatusNoContent {
		t.Fatalf("subscribe through the first endpoint to a client of the second: %d %s", r.status, r.body)
	}
}
