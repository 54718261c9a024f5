package realtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-realtime/realtime/broker"
)

// Two endpoints on one broker, one served by the hijacked writer pool and one
// by a goroutine per stream; h2c streams on the first are goroutine streams too.
// MAXSUBS changes on every reload: Caddy skips a config that did not change.
const reloadLoadCaddyfile = `{
	admin {ADMIN}
	auto_https off
	persist_config off
	log {
		exclude admin.api
	}
	servers {
		protocols h1 h2c
	}
}
http://127.0.0.1:{PORT} {
	realtime /api/realtime {
		heartbeat 300ms
		max_subscriptions MAXSUBS
	}
	realtime /goroutine/realtime {
		heartbeat 300ms
		hijack off
		max_subscriptions MAXSUBS
	}
}
`

func reloadLoadConfig(round int) string {
	return strings.Replace(reloadLoadCaddyfile, "MAXSUBS", fmt.Sprint(100+round), -1)
}

const (
	reloadRounds     = 10
	reloadMinEvents  = 400 // the publisher goes on at least this long
	reloadMaxEvents  = 5000
	reloadTestBudget = 40 * time.Second // a stuck run fails instead of hanging
)

// TestCaddyReloadUnderLoad: events published continuously through the admin
// API while the config is reloaded ten times reach every client once and in
// order, whether its stream stays open the whole time (HTTP/1.1 hijacked,
// HTTP/1.1 goroutine, h2c) or is dropped again and again and resumed with
// Last-Event-ID (header or ?lastEventId=), as EventSource does.
//
// Every publish goes over a fresh connection (the admin server is replaced
// on each load). Even so a few fail in transport (EOF, connection reset)
// during reloads: each load listens on a new SO_REUSEPORT socket and closes
// the old one, and Linux resets the connections still queued on it, before
// any request is read. Those are retried with the same idempotency ids, so a
// batch that was published after all is not published twice; the log says
// how many events the failed attempts had published (so far always none).
func TestCaddyReloadUnderLoad(t *testing.T) {
	p := startCaddy(t, reloadLoadConfig(0))
	fresh := func() *http.Client {
		return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	h2cTransport := &http.Transport{Protocols: new(http.Protocols)}
	h2cTransport.Protocols.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Transport: h2cTransport}
	t.Cleanup(h2cTransport.CloseIdleConnections)
	kinds := []struct {
		name   string
		client *http.Client
		path   string
		proto  int
	}{
		{"h1-hijacked", fresh(), "/api/realtime", 1},
		{"h1-goroutine", fresh(), "/goroutine/realtime", 1},
		{"h2c", h2c, "/api/realtime", 2},
	}
	// Drop points are random; the seed is logged to replay a failure's pattern
	// (its timing cannot be replayed).
	seed := uint64(time.Now().UnixNano())
	t.Logf("drop pattern seed %d", seed)
	var subs []*reloadSubscriber
	for i, k := range kinds {
		for j, resume := range []string{"", "header", "query"} {
			s := &reloadSubscriber{
				name:   k.name + "/" + map[string]string{"": "plain", "header": "resume-header", "query": "resume-query"}[resume],
				client: k.client,
				url:    p.url(k.path),
				proto:  k.proto,
				resume: resume,
				rng:    rand.New(rand.NewPCG(seed, uint64(3*i+j))),
			}
			if err := s.open(""); err != nil {
				t.Fatal(err)
			}
			if r := p.subscribe(k.client, p.url(""), s.id, "posts/*"); r.status != http.StatusNoContent {
				t.Fatalf("%s: subscribe: %d %s", s.name, r.status, r.body)
			}
			subs = append(subs, s)
		}
	}

	deadline := time.Now().Add(reloadTestBudget)
	var final atomic.Int64 // the last event's number once the publisher is done
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Go(func() { s.err = s.run(&final, deadline) })
	}

	// The reloader starts once events flow and spaces its loads out, so
	// that publishes, reloads, drops and resumes overlap.
	var published atomic.Int64
	reloadsDone := make(chan struct{})
	var reloadErrs []error
	var reloadTimes []time.Duration
	go func() {
		defer close(reloadsDone)
		for published.Load() < 20 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		for round := 1; round <= reloadRounds; round++ {
			start := time.Now()
			r, err := doErr(fresh(), http.MethodPost, "http://"+p.admin+"/load", "text/caddyfile", p.expand(reloadLoadConfig(round)))
			reloadTimes = append(reloadTimes, time.Since(start))
			if err == nil && r.status != http.StatusOK {
				err = fmt.Errorf("%d %s", r.status, r.body)
			}
			if err != nil {
				reloadErrs = append(reloadErrs, fmt.Errorf("reload %d: %w", round, err))
			}
			time.Sleep(time.Duration(50+20*(round%4)) * time.Millisecond)
		}
	}()

	pub := &reloadPublisher{client: fresh(), url: "http://" + p.admin + "/realtime/events"}
	n := 0
	reloading := true
	for n < reloadMaxEvents && (reloading || n < reloadMinEvents) && time.Now().Before(deadline) {
		size := 1 + n%3 // batches of 1, 2 and 3 events
		if err := pub.publish(n+1, size); err != nil {
			t.Error(err)
			break
		}
		n += size
		published.Store(int64(n))
		select {
		case <-reloadsDone:
			reloading = false
		default:
		}
		time.Sleep(time.Millisecond)
	}
	<-reloadsDone
	final.Store(int64(n))
	wg.Wait()

	for _, err := range reloadErrs {
		t.Error(err)
	}
	if len(reloadTimes) != reloadRounds {
		t.Errorf("%d reloads ran, want %d", len(reloadTimes), reloadRounds)
	}
	t.Logf("%d events in %d posts, %d reloads (%v); publish: %d transport errors, %d non-200 answers, %d retried batches, %d events published by an attempt that failed in transport",
		n, pub.posts, len(reloadTimes), reloadTimes, pub.transportErrs, pub.badStatus, pub.retried, pub.publishedByFailed)
	for _, msg := range pub.notes {
		t.Log("publish: " + msg)
	}
	for _, s := range subs {
		if s.err != nil {
			t.Errorf("%s: %v", s.name, s.err)
		}
		lost, dup, reordered := sequenceFaults(s.got, n)
		t.Logf("%s: %d events, %d drops/resumes (%d resumes retried), %d lost, %d duplicated, %d reordered",
			s.name, len(s.got), s.drops, s.openRetries, lost, dup, reordered)
		if lost+dup+reordered > 0 {
			t.Errorf("%s: %d lost, %d duplicated, %d reordered of %d events; first divergence: %s",
				s.name, lost, dup, reordered, n, firstDivergence(s.got))
		}
		if s.resume != "" && s.drops == 0 {
			t.Errorf("%s: never dropped its stream", s.name)
		}
	}
}

// reloadPublisher posts numbered events with idempotency ids, retrying a
// batch whose POST failed until an answer says how much of it was new.
type reloadPublisher struct {
	client *http.Client
	url    string

	posts, transportErrs, badStatus, retried, publishedByFailed int
	notes                                                       []string
}

func (p *reloadPublisher) publish(first, size int) error {
	events := make([]string, size)
	for i := range events {
		n := first + i
		events[i] = fmt.Sprintf(`{"id":"reload-%d","action":"create","collection":"posts","record":{"id":"r%d","n":%d}}`, n, n, n)
	}
	body := "[" + strings.Join(events, ",") + "]"
	failedInTransport := false
	for attempt := 0; attempt < 50; attempt++ {
		if attempt > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		p.posts++
		r, err := doErr(p.client, http.MethodPost, p.url, "application/json", body)
		if err != nil {
			p.transportErrs++
			failedInTransport = true
			p.notes = append(p.notes, fmt.Sprintf("events %d..%d, attempt %d: %v", first, first+size-1, attempt+1, err))
			continue
		}
		if r.status != http.StatusOK {
			p.badStatus++
			p.notes = append(p.notes, fmt.Sprintf("events %d..%d, attempt %d: %d %s", first, first+size-1, attempt+1, r.status, strings.TrimSpace(r.body)))
			continue
		}
		var answer struct{ Published int }
		if err := json.Unmarshal([]byte(r.body), &answer); err != nil {
			return fmt.Errorf("publish answer %q: %v", r.body, err)
		}
		if attempt > 0 {
			p.retried++
		}
		switch {
		case answer.Published == size:
		case failedInTransport && answer.Published < size:
			// An attempt that failed in transport had published them: the
			// idempotency ids kept the retry from publishing them twice.
			p.publishedByFailed += size - answer.Published
			p.notes = append(p.notes, fmt.Sprintf("events %d..%d: the retry published %d of %d, the failed attempt the rest", first, first+size-1, answer.Published, size))
		default:
			return fmt.Errorf("events %d..%d: published %d, want %d (%s)", first, first+size-1, answer.Published, size, r.body)
		}
		return nil
	}
	return fmt.Errorf("events %d..%d: no answer after 50 attempts", first, first+size-1)
}

// reloadSubscriber is one client: a stream kept open, or one dropped after a
// random number of events (sometimes right after PB_CONNECT) and resumed
// with the last id it received, as EventSource remembers it.
type reloadSubscriber struct {
	name   string
	client *http.Client
	url    string
	proto  int
	resume string // "" (never dropped), "header" or "query": how Last-Event-ID is sent
	rng    *rand.Rand

	id     string // client id
	stream *sseConn
	lastID string // the id of the last frame received, PB_CONNECT's included

	got                []int // event numbers, as received
	epoch              string
	lastPos            uint64
	drops, openRetries int
	err                error
	history            []string // the last frames and resumes, for a failure's message
}

func (s *reloadSubscriber) note(format string, args ...any) {
	if len(s.history) == 12 {
		s.history = s.history[1:]
	}
	s.history = append(s.history, fmt.Sprintf(format, args...))
}

// open starts a stream, resuming from lastEventID when it is not empty, and
// checks its PB_CONNECT.
func (s *reloadSubscriber) open(lastEventID string) error {
	u, hdr := s.url, http.Header{}
	if lastEventID != "" {
		if s.resume == "query" {
			u += "?lastEventId=" + url.QueryEscape(lastEventID)
		} else {
			hdr.Set("Last-Event-ID", lastEventID)
		}
	}
	var err error
	for attempt := 0; ; attempt++ {
		s.stream, err = dialSSE(s.client, u, hdr)
		if err == nil {
			break
		}
		// A GET on a connection the old server is closing may fail in
		// transport: it created no client (or one that ends at once), so try
		// again with the same id.
		if attempt == 5 {
			return fmt.Errorf("%s: opening a stream: %w", s.name, err)
		}
		s.openRetries++
		time.Sleep(20 * time.Millisecond)
	}
	if s.stream.resp.ProtoMajor != s.proto {
		return fmt.Errorf("%s: stream over %s", s.name, s.stream.resp.Proto)
	}
	f, err := s.stream.next(10 * time.Second)
	if err != nil {
		return fmt.Errorf("%s: reading PB_CONNECT: %w", s.name, err)
	}
	if lastEventID == "" {
		s.id = f.id
		if want := (sseFrame{id: f.id, event: "PB_CONNECT", data: `{"clientId":"` + f.id + `"}`}); f != want || len(f.id) != 40 {
			return fmt.Errorf("%s: PB_CONNECT %+v", s.name, f)
		}
	} else if want := (sseFrame{id: s.id, event: "PB_CONNECT", data: `{"clientId":"` + s.id + `","resumed":true}`}); f != want {
		return fmt.Errorf("%s: resuming from %q after %d events: PB_CONNECT %+v, want %+v", s.name, lastEventID, len(s.got), f, want)
	}
	s.lastID = f.id
	s.note("opened with %q: PB_CONNECT %s", lastEventID, f.data)
	return nil
}

// run reads events until it has the last one published, dropping and
// resuming its stream on the way if it is a resuming client.
func (s *reloadSubscriber) run(final *atomic.Int64, deadline time.Time) error {
	defer func() { s.stream.close() }()
	budget := s.nextDrop()
	for {
		if budget == 0 {
			s.stream.close()
			s.drops++
			if d := s.rng.IntN(40); d >= 10 { // a quarter resume at once, before the server may notice
				time.Sleep(time.Duration(d-10) * time.Millisecond)
			}
			if err := s.open(s.lastID); err != nil {
				return err
			}
			budget = s.nextDrop()
			continue
		}
		if f := final.Load(); f > 0 && len(s.got) > 0 && s.got[len(s.got)-1] >= int(f) {
			return nil
		}
		wait := time.Until(deadline)
		if wait > 200*time.Millisecond {
			wait = 200 * time.Millisecond // look at final now and then
		}
		f, err := s.stream.next(wait)
		if errors.Is(err, errNoFrame) {
			if time.Now().After(deadline) {
				return fmt.Errorf("only %d events (last %v) when time was up", len(s.got), s.got[max(0, len(s.got)-3):])
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("stream ended after %d events: %w", len(s.got), err)
		}
		if err := s.take(f); err != nil {
			return err
		}
		budget--
	}
}

// nextDrop is how many events to read before the next drop (-1: never).
func (s *reloadSubscriber) nextDrop() int {
	if s.resume == "" {
		return -1
	}
	if s.rng.IntN(4) == 0 {
		return 0 // right after PB_CONNECT: the id to resume from is the bare client id
	}
	return 1 + s.rng.IntN(60)
}

// take records one event frame and checks its id.
func (s *reloadSubscriber) take(f sseFrame) error {
	if f.event != "posts/*" {
		return fmt.Errorf("unexpected frame %+v", f)
	}
	id, ok := broker.ParseEventID(f.id)
	if !ok || id.ClientID != s.id || id.Position == 0 {
		return fmt.Errorf("frame id %q: want %s.<epoch>.<position>", f.id, s.id)
	}
	if s.epoch == "" {
		s.epoch = id.Epoch
	}
	if id.Epoch != s.epoch || id.Position <= s.lastPos {
		return fmt.Errorf("frame id %q (%s) after epoch %s position %d: a new epoch or an old position; before it:\n\t%s",
			f.id, f.data, s.epoch, s.lastPos, strings.Join(s.history, "\n\t"))
	}
	s.note("%d: %s", id.Position, f.data)
	s.lastPos = id.Position
	var data struct {
		Action string
		Record struct {
			ID string
			N  int
		}
	}
	if err := json.Unmarshal([]byte(f.data), &data); err != nil || data.Action != "create" || data.Record.ID != fmt.Sprintf("r%d", data.Record.N) {
		return fmt.Errorf("event data %q (%v)", f.data, err)
	}
	s.got = append(s.got, data.Record.N)
	s.lastID = f.id
	return nil
}

// sequenceFaults compares got with 1..n: numbers missing, numbers received
// more than once, and times a number came after a larger one.
func sequenceFaults(got []int, n int) (lost, dup, reordered int) {
	seen := make(map[int]int, len(got))
	for i, v := range got {
		seen[v]++
		if i > 0 && v < got[i-1] {
			reordered++
		}
	}
	for v := 1; v <= n; v++ {
		if seen[v] == 0 {
			lost++
		}
	}
	for v, c := range seen {
		if v < 1 || v > n {
			dup += c // not published at all
		} else {
			dup += c - 1
		}
	}
	return lost, dup, reordered
}

func firstDivergence(got []int) string {
	for i, v := range got {
		if v != i+1 {
			return fmt.Sprintf("event #%d is %d, around it %v", i+1, v, got[max(0, i-3):min(len(got), i+4)])
		}
	}
	return fmt.Sprintf("the %d events received are 1..%d", len(got), len(got))
}
