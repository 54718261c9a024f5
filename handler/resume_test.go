package handler

import (
	"bufio"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/broker"
)

// rawStream is a GET whose frames are read as sent, ids with positions.
type rawStream struct {
	t    *testing.T
	resp *http.Response
	br   *bufio.Reader
}

func (e *testEnv) openRaw(u, ip string, hdr http.Header) *rawStream {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("X-Test-IP", ip)
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("GET: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET status %d", resp.StatusCode)
	}
	s := &rawStream{t: e.t, resp: resp, br: bufio.NewReader(resp.Body)}
	e.t.Cleanup(func() { resp.Body.Close() })
	return s
}

// next returns the next frame (heartbeats skipped) split into its id and the rest.
func (s *rawStream) next() (id, rest string) {
	s.t.Helper()
	for {
		var frame strings.Builder
		for {
			line, err := s.br.ReadString('\n')
			if err != nil {
				s.t.Fatalf("reading a frame: %v (have %q)", err, frame.String())
			}
			if line == "\n" {
				break
			}
			frame.WriteString(line)
		}
		f := frame.String()
		if strings.HasPrefix(f, ":") {
			continue
		}
		idLine, rest, _ := strings.Cut(f, "\n")
		return strings.TrimPrefix(idLine, "id:"), rest
	}
}

func resumeEnv(t *testing.T) *testEnv {
	return newEnv(t, nil, func(h *Handler) {
		h.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-IP") }
	})
}

func postData(id string) string {
	return fmt.Sprintf(`data:{"record":{"collectionName":"posts","id":%q},"action":"create"}`+"\n", id)
}

// TestStreamResume: a stream dropped mid-way comes back with Last-Event-ID
// (header or ?lastEventId=) and gets its id, its subscriptions and every
// event it missed, once and in order, then live ones.
func TestStreamResume(t *testing.T) {
	t.Parallel()
	e := resumeEnv(t)
	s := e.openRaw(e.url(), "10.0.0.1", nil)
	cid, connect := s.next()
	if connect != "event:PB_CONNECT\ndata:{\"clientId\":\""+cid+"\"}\n" {
		t.Fatalf("fresh PB_CONNECT %q: must stay PocketBase's", connect)
	}
	e.subscribe(cid, map[string]string{"X-Test-IP": "10.0.0.1"}, "posts/*")
	e.publish(`{"action":"create","record":{"collectionName":"posts","id":"r1"}}`)
	last, got := s.next()
	if got != "event:posts/*\n"+postData("r1") {
		t.Fatalf("frame %q", got)
	}
	s.resp.Body.Close() // the network drops
	eventually(t, 5*time.Second, "the broker notices the drop", func() bool {
		_, ok := e.b.Client(cid)
		return !ok
	})
	for _, r := range []string{"r2", "r3"} {
		e.publish(`{"action":"create","record":{"collectionName":"posts","id":"` + r + `"}}`)
	}

	for round, how := range []string{"header", "query"} {
		u, hdr := e.url(), http.Header{"Last-Event-Id": {last}}
		if how == "query" {
			u, hdr = e.url()+"?lastEventId="+url.QueryEscape(last), nil
		}
		s = e.openRaw(u, "10.0.0.1", hdr)
		id, connect := s.next()
		if id != cid || connect != "event:PB_CONNECT\ndata:{\"clientId\":\""+cid+"\",\"resumed\":true}\n" {
			t.Fatalf("%s: resumed PB_CONNECT id %q %q, want %s resumed:true", how, id, connect, cid)
		}
		want := []string{"r2", "r3"}
		if round == 1 {
			want = []string{"r4"}
		}
		for _, r := range want {
			id, got := s.next()
			if got != "event:posts/*\n"+postData(r) {
				t.Fatalf("%s: replayed %q, want %s", how, got, r)
			}
			last = id
		}
		e.publish(`{"action":"create","record":{"collectionName":"posts","id":"r4"}}`)
		id, got = s.next()
		if round == 0 {
			if got != "event:posts/*\n"+postData("r4") {
				t.Fatalf("%s: live frame %q, want r4", how, got)
			}
			last = id
			// r4 again for the second round: published while away.
			s.resp.Body.Close()
			eventually(t, 5*time.Second, "the broker notices the drop", func() bool {
				_, ok := e.b.Client(cid)
				return !ok
			})
			e.publish(`{"action":"create","record":{"collectionName":"posts","id":"r4"}}`)
		}
	}
}

// TestStreamResumeRefused: an id that cannot be resumed gets a new client
// and resumed:false; the other client's events stay its own.
func TestStreamResumeRefused(t *testing.T) {
	t.Parallel()
	e := resumeEnv(t)
	s := e.openRaw(e.url(), "10.0.0.1", nil)
	cid, _ := s.next()
	e.subscribe(cid, map[string]string{"X-Test-IP": "10.0.0.1"}, "posts/*")
	e.publish(`{"action":"create","record":{"collectionName":"posts","id":"r1"}}`)
	last, _ := s.next()
	s.resp.Body.Close()
	eventually(t, 5*time.Second, "the broker notices the drop", func() bool {
		_, ok := e.b.Client(cid)
		return !ok
	})
	e.publish(`{"action":"create","record":{"collectionName":"posts","id":"r2"}}`)
	for _, tt := range []struct{ name, ip, id string }{
		{"other IP", "10.0.0.2", last},
		{"forged", "10.0.0.1", strings.Repeat("A", 40) + "." + e.b.Epoch() + ".1"},
		{"oversized", "10.0.0.1", last + strings.Repeat("0", broker.MaxEventIDLen)},
		{"other epoch", "10.0.0.1", cid + ".abcdefgh.1"},
	} {
		s := e.openRaw(e.url(), tt.ip, http.Header{"Last-Event-Id": {tt.id}})
		id, connect := s.next()
		if id == cid || connect != "event:PB_CONNECT\ndata:{\"clientId\":\""+id+"\",\"resumed\":false}\n" {
			t.Errorf("%s: PB_CONNECT id %q %q, want a new client with resumed:false", tt.name, id, connect)
		}
		e.publish(`{"action":"create","record":{"collectionName":"posts","id":"x"}}`)
		if c, ok := e.b.Client(id); !ok || len(c.Subscriptions()) != 0 {
			t.Errorf("%s: the new client has subscriptions", tt.name)
		}
		s.resp.Body.Close()
	}
}
