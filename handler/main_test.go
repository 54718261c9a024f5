package handler

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/caddy-realtime/realtime/broker"
)

// hijack runs every test with HTTP/1.1 streams served by the broker's writer
// pool (go test ./handler/ -hijack); the default is a goroutine per stream.
var hijack = flag.Bool("hijack", false, "serve HTTP/1.1 streams in hijack mode")

// useTLS runs every test over HTTPS (HTTP/1.1 over TLS; with -hijack, TLS
// streams are adopted by the broker's writers like plain ones).
var useTLS = flag.Bool("tls", false, "serve over HTTP/1.1 with TLS")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// genericMsg is PocketBase's message for bind and validation errors.
const genericMsg = "Something went wrong while processing your request."

var clientIDRe = regexp.MustCompile(`^[A-Za-z0-9]{40}$`)

// positionRe matches the position part of frame ids (broker's TestEventIDs checks it).
var positionRe = regexp.MustCompile(`(?m)^(id:[A-Za-z0-9]{40})\.[A-Za-z0-9]{8}\.[1-9][0-9]*$`)

// withoutPositions turns frame ids back into bare client ids, so that tests
// about content compare frames as PocketBase writes them.
func withoutPositions(s string) string { return positionRe.ReplaceAllString(s, "$1") }

// testEnv is one Handler behind a real httptest server on 127.0.0.1.
type testEnv struct {
	t      *testing.T
	srv    *httptest.Server
	h      *Handler
	b      *broker.Broker
	client *http.Client
	tr     *http.Transport
}

// newEnv starts a plain HTTP/1.1 server. policy may be nil (defaults); configure
// may adjust the Handler before the server starts.
func newEnv(t *testing.T, policy *broker.Policy, configure func(*Handler)) *testEnv {
	t.Helper()
	return newEnvTLS(t, policy, configure, *useTLS)
}

// newEnvTLS is newEnv served over HTTPS (HTTP/1.1) when withTLS is set.
func newEnvTLS(t *testing.T, policy *broker.Policy, configure func(*Handler), withTLS bool) *testEnv {
	t.Helper()
	b := broker.New("test", policy)
	h := &Handler{Broker: b, Hijack: *hijack}
	if configure != nil {
		configure(h)
	}
	srv := httptest.NewUnstartedServer(h)
	tr := &http.Transport{}
	if withTLS {
		srv.StartTLS() // HTTP/1.1 only: httptest enables HTTP/2 only when asked
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	} else {
		srv.Start()
	}
	env := &testEnv{t: t, srv: srv, h: h, b: b, client: &http.Client{Transport: tr}, tr: tr}
	// Cleanups run last-in first-out: end every stream, stop the server, then
	// check that every frame's memory was let go (max_queued_bytes counts
	// shared frames by reference: a reference never released would count
	// against the budget for ever).
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for b.Stats().QueuedBytes != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := b.Stats().QueuedBytes; n != 0 {
			t.Errorf("%d queued bytes still counted after every stream ended", n)
		}
	})
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	t.Cleanup(b.Close)
	return env
}

func (e *testEnv) url() string { return e.srv.URL + "/api/realtime" }

// dial opens a raw connection to the server (TLS with -tls) whose socket has a
// small receive buffer, for tests that write requests and read responses by hand.
func (e *testEnv) dial() net.Conn {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	_ = conn.(*net.TCPConn).SetReadBuffer(4096)
	if e.srv.TLS == nil {
		return conn
	}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		e.t.Fatal(err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc
}

// sseStream is an open GET /api/realtime with a goroutine splitting the body into frames.
type sseStream struct {
	t      *testing.T
	resp   *http.Response
	id     string
	frames chan string
	done   chan struct{}
	err    error // the body's final read error; io.EOF for a clean end; valid after done
	once   sync.Once
}

// openStream sends GET and reads PB_CONNECT, checking its exact bytes.
func (e *testEnv) openStream(hdr http.Header) *sseStream {
	e.t.Helper()
	s := e.openStreamWith(e.client, e.url(), hdr)
	if s.resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET status = %d, want 200", s.resp.StatusCode)
	}
	return s
}

func (e *testEnv) openStreamWith(c *http.Client, u string, hdr http.Header) *sseStream {
	t := e.t
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	s := &sseStream{t: t, resp: resp, frames: make(chan string, 1<<14), done: make(chan struct{})}
	t.Cleanup(s.Close)
	if resp.StatusCode != http.StatusOK {
		close(s.done)
		close(s.frames)
		return s
	}
	go s.read()
	first := s.next(5 * time.Second)
	m := regexp.MustCompile(`^id:([A-Za-z0-9]{40})\nevent:PB_CONNECT\ndata:\{"clientId":"([A-Za-z0-9]{40})"\}\n\n$`).FindStringSubmatch(first)
	if m == nil || m[1] != m[2] {
		t.Fatalf("first frame = %q, want id:<40 alnum>\\nevent:PB_CONNECT\\ndata:{\"clientId\":\"<same>\"}\\n\\n", first)
	}
	s.id = m[1]
	return s
}

func (s *sseStream) read() {
	defer close(s.done)
	defer close(s.frames)
	br := bufio.NewReader(s.resp.Body)
	var frame strings.Builder
	for {
		line, err := br.ReadString('\n')
		frame.WriteString(line)
		if err != nil {
			if frame.Len() > 0 && err == io.EOF {
				err = fmt.Errorf("stream ended inside a frame: %q", frame.String())
			}
			s.err = err
			return
		}
		if line == "\n" {
			s.frames <- withoutPositions(frame.String())
			frame.Reset()
		}
	}
}

// next returns the next raw frame (heartbeats included), failing the test on timeout or end.
func (s *sseStream) next(timeout time.Duration) string {
	s.t.Helper()
	select {
	case f, ok := <-s.frames:
		if !ok {
			<-s.done
			s.t.Fatalf("stream ended (%v) while waiting for a frame", s.err)
		}
		return f
	case <-time.After(timeout):
		s.t.Fatalf("no frame within %v", timeout)
	}
	return ""
}

// nextEvent returns the next frame that is not a heartbeat comment.
func (s *sseStream) nextEvent(timeout time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f := s.next(time.Until(deadline))
		if !strings.HasPrefix(f, ":") {
			return f
		}
	}
}

// waitEnd waits for the body to end and returns the frames seen before the end and the read error.
func (s *sseStream) waitEnd(timeout time.Duration) ([]string, error) {
	s.t.Helper()
	var frames []string
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-s.frames:
			if !ok {
				<-s.done
				return frames, s.err
			}
			frames = append(frames, f)
		case <-timer.C:
			s.t.Fatalf("stream still open after %v (frames so far: %q)", timeout, frames)
		}
	}
}

// noFrame asserts nothing arrives for d.
func (s *sseStream) noFrame(d time.Duration) {
	s.t.Helper()
	select {
	case f, ok := <-s.frames:
		if ok {
			s.t.Fatalf("unexpected frame %q", f)
		}
		s.t.Fatalf("stream ended unexpectedly: %v", s.err)
	case <-time.After(d):
	}
}

func (s *sseStream) Close() {
	s.once.Do(func() {
		s.resp.Body.Close()
		<-s.done
	})
}

// response is a finished non-stream response.
type response struct {
	status int
	header http.Header
	body   string
}

func (e *testEnv) do(method, u string, body io.Reader, hdr map[string]string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s body: %v", method, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (e *testEnv) postJSON(body string, hdr map[string]string) response {
	e.t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	for k, v := range hdr {
		h[k] = v
	}
	return e.do(http.MethodPost, e.url(), strings.NewReader(body), h)
}

// subscribe POSTs topics for id and requires 204.
func (e *testEnv) subscribe(id string, hdr map[string]string, topics ...string) {
	e.t.Helper()
	if topics == nil {
		topics = []string{}
	}
	r := e.postJSON(mustJSON(e.t, map[string]any{"clientId": id, "subscriptions": topics}), hdr)
	if r.status != http.StatusNoContent || r.body != "" {
		e.t.Fatalf("subscribe %q: %d %q, want 204 and no body", topics, r.status, r.body)
	}
}

func (e *testEnv) postForm(values url.Values) response {
	e.t.Helper()
	return e.do(http.MethodPost, e.url(), strings.NewReader(values.Encode()),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
}

func (e *testEnv) postMultipart(fields [][2]string) response {
	e.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			e.t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		e.t.Fatal(err)
	}
	return e.do(http.MethodPost, e.url(), &buf, map[string]string{"Content-Type": mw.FormDataContentType()})
}

func (e *testEnv) publish(raw string) {
	e.t.Helper()
	ev, err := broker.DecodeEvent([]byte(raw))
	if err != nil {
		e.t.Fatalf("DecodeEvent(%s): %v", raw, err)
	}
	if n := e.b.Publish(ev); n != 1 {
		e.t.Fatalf("Publish = %d, want 1", n)
	}
}

func (e *testEnv) mustClient(id string) *broker.Client {
	e.t.Helper()
	c, ok := e.b.Client(id)
	if !ok {
		e.t.Fatalf("broker has no client %q", id)
	}
	return c
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pbError is PocketBase's error body, keys in the order data, message, status.
func pbError(status int, message, data string) string {
	if data == "" {
		data = "{}"
	}
	return fmt.Sprintf(`{"data":%s,"message":%q,"status":%d}`, data, message, status)
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// isCleanEOF reports whether err is the clean end of a chunked body.
func isCleanEOF(err error) bool {
	return errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF)
}
