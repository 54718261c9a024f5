package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// recStream is an in-memory Stream that records everything written to it.
type recStream struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	writes   int
	flushes  int
	deadline time.Time // the write deadline now
	// writeDeadline is the deadline in force during the last Write.
	writeDeadline time.Time
	writeErr      error // returned by Write when set
	flushErr      error // returned by Flush when set
	gate          chan struct{}
	inWrite       chan struct{} // receives once per Write that waits on gate
}

func (s *recStream) Write(p []byte) (int, error) {
	if s.gate != nil {
		select {
		case s.inWrite <- struct{}{}:
		default:
		}
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	s.writes++
	s.writeDeadline = s.deadline
	return s.buf.Write(p)
}

func (s *recStream) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushes++
	return s.flushErr
}

func (s *recStream) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	s.deadline = t
	s.mu.Unlock()
	return nil
}

func (s *recStream) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func (s *recStream) frames() []frame { return parseFrames(s.String()) }

// frame is one SSE message as written on the wire.
type frame struct {
	ID, Event, Data string
	Comment         bool // a ":" heartbeat line
}

// parseFrames splits an SSE byte stream into frames; it fails loudly (via the
// returned frame's Event) on anything it does not expect, so tests notice.
func parseFrames(s string) []frame {
	var out []frame
	for s != "" {
		i := strings.Index(s, "\n\n")
		if i < 0 {
			out = append(out, frame{Event: "INCOMPLETE:" + s})
			break
		}
		block := s[:i]
		s = s[i+2:]
		if block == ":" {
			out = append(out, frame{Comment: true})
			continue
		}
		var f frame
		for _, line := range strings.Split(block, "\n") {
			k, v, ok := strings.Cut(line, ":")
			switch {
			case !ok:
				f.Event = "BADLINE:" + line
			case k == "id":
				f.ID = v
			case k == "event":
				f.Event = v
			case k == "data":
				f.Data = v
			default:
				f.Event = "BADFIELD:" + line
			}
		}
		out = append(out, f)
	}
	return out
}

// dataFrames drops PB_CONNECT and heartbeats.
func dataFrames(fs []frame) []frame {
	var out []frame
	for _, f := range fs {
		if f.Comment || f.Event == "PB_CONNECT" {
			continue
		}
		out = append(out, f)
	}
	return out
}

// pending returns (without draining) the bytes queued for c, exactly what Serve would write.
func pending(c *Client) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.queue.appendTo(nil))
}

// drain takes the queued bytes of c, as Serve does.
func drain(c *Client) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := string(c.queue.take(nil))
	c.frames = 0
	return withoutPositions(s)
}

// positionRe matches the position part of frame ids (TestEventIDs checks it).
var positionRe = regexp.MustCompile(`(?m)^(id:[A-Za-z0-9]{40})\.[A-Za-z0-9]{8}\.[1-9][0-9]*$`)

// withoutPositions turns frame ids back into bare client ids, so that tests
// about content compare frames as PocketBase writes them.
func withoutPositions(s string) string { return positionRe.ReplaceAllString(s, "$1") }

var clientIDRe = regexp.MustCompile(`^[A-Za-z0-9]{40}$`)

func connectFrameFor(id string) string {
	return "id:" + id + "\nevent:PB_CONNECT\ndata:{\"clientId\":\"" + id + "\"}\n\n"
}

func mustConnect(t testing.TB, b *Broker) *Client {
	t.Helper()
	c, err := b.Connect("127.0.0.1")
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return c
}

func mustSubscribe(t testing.TB, b *Broker, c *Client, topics ...string) {
	t.Helper()
	if err := b.SetSubscriptions(c, topics); err != nil {
		t.Fatalf("SetSubscriptions(%q): %v", topics, err)
	}
}

func mustEvent(t testing.TB, js string) *Event {
	t.Helper()
	ev, err := DecodeEvent([]byte(js))
	if err != nil {
		t.Fatalf("DecodeEvent(%s): %v", js, err)
	}
	return ev
}

func postEvent(t testing.TB, action, id string, extra string) *Event {
	t.Helper()
	js := fmt.Sprintf(`{"action":%q,"record":{"id":%q,"collectionName":"posts","collectionId":"pbc_posts"%s}}`, action, id, extra)
	return mustEvent(t, js)
}

// served is a client whose Serve runs in a goroutine, writing to a recStream.
type served struct {
	c      *Client
	s      *recStream
	cancel context.CancelFunc
	reason chan string
}

func serve(t testing.TB, b *Broker, c *Client, s *recStream) *served {
	t.Helper()
	if s == nil {
		s = &recStream{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	sv := &served{c: c, s: s, cancel: cancel, reason: make(chan string, 1)}
	go func() {
		r := c.Serve(ctx, s)
		b.Disconnect(c, r)
		sv.reason <- r
	}()
	t.Cleanup(func() { sv.stop() })
	return sv
}

// stop cancels the stream and returns why Serve ended.
func (sv *served) stop() string {
	sv.cancel()
	r := <-sv.reason
	sv.reason <- r // keep it readable for later calls
	return r
}

// waitReason waits (bounded, only to keep a broken test from hanging) for Serve to end.
func (sv *served) waitReason(t testing.TB) string {
	t.Helper()
	select {
	case r := <-sv.reason:
		sv.reason <- r
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return ""
	}
}

// waitFrames waits until at least n data frames (not PB_CONNECT, not heartbeats) arrived.
func (sv *served) waitFrames(t testing.TB, n int) []frame {
	t.Helper()
	var fs []frame
	err := waitUntil(func() bool {
		fs = dataFrames(sv.s.frames())
		return len(fs) >= n
	})
	if err != nil {
		t.Fatalf("got %d data frames, want %d: %q", len(fs), n, sv.s.String())
	}
	return fs
}

// waitUntil polls cond; the bound only keeps a broken test from hanging forever.
func waitUntil(cond func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// indexEntries lists "base|topic|clientID" for every index entry.
func indexEntries(b *Broker) []string {
	var out []string
	for i := range b.index.shards {
		sh := &b.index.shards[i]
		sh.mu.RLock()
		for base, topics := range sh.byBase {
			if len(topics) == 0 {
				out = append(out, base+"|<empty base>")
			}
			for topic, ts := range topics {
				if len(ts.clients) == 0 {
					out = append(out, base+"|"+topic+"|<empty topic>")
				}
				for c := range ts.clients {
					out = append(out, base+"|"+topic+"|"+c.id)
				}
			}
		}
		sh.mu.RUnlock()
	}
	return out
}
