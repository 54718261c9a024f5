//go:build linux

package bench

// Small goroutine-per-connection clients for the abuse suite's attackers and
// probes (a few dozen streams, or requests): a PocketBase stream that learns
// its clientId, subscription POSTs from a chosen source address, and a slow
// auth endpoint.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// pbStream is one GET /api/realtime whose events are counted, not parsed.
type pbStream struct {
	conn     net.Conn
	ClientID string
	Bytes    atomic.Int64
	Events   atomic.Int64
	done     chan struct{}
	err      error // why the stream ended, after done
}

var errStatus = errors.New("status")

// openPBStream connects from src (empty = any), reads PB_CONNECT and keeps reading in the background.
func openPBStream(addr, src string, timeout time.Duration) (*pbStream, error) {
	d := net.Dialer{Timeout: timeout}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	fmt.Fprintf(conn, "GET /api/realtime HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n", addr)
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		conn.Close()
		return nil, fmt.Errorf("%w %d %s", errStatus, resp.StatusCode, bytes.TrimSpace(b))
	}
	body := bufio.NewReaderSize(resp.Body, 64<<10)
	s := &pbStream{conn: conn, done: make(chan struct{})}
	for {
		line, err := body.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("reading PB_CONNECT: %w", err)
		}
		if v, ok := strings.CutPrefix(line, "id:"); ok {
			s.ClientID = strings.TrimSpace(v)
		}
		if line == "\n" && s.ClientID != "" {
			break
		}
	}
	conn.SetDeadline(time.Time{})
	go s.drain(body)
	return s, nil
}

func (s *pbStream) drain(r io.Reader) {
	defer close(s.done)
	buf := make([]byte, 64<<10)
	key := []byte("event:")
	var carry []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.Bytes.Add(int64(n))
			chunk := append(carry, buf[:n]...)
			s.Events.Add(int64(bytes.Count(chunk, key)))
			carry = append(carry[:0], chunk[max(0, len(chunk)-len(key)+1):]...)
		}
		if err != nil {
			s.err = err
			return
		}
	}
}

// Closed reports whether the stream ended.
func (s *pbStream) Closed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *pbStream) Close() { s.conn.Close() }

// httpFrom is a client whose connections come from src (empty = any).
func httpFrom(src string, conns int, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	tr := &http.Transport{
		DialContext:         d.DialContext,
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
		IdleConnTimeout:     30 * time.Second,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// subscribeBody is the JSON of a subscription POST.
func subscribeBody(clientID string, topics []string) []byte {
	b, _ := json.Marshal(map[string]any{"clientId": clientID, "subscriptions": topics})
	return b
}

// postSubscribe sends one subscription POST; status 0 with err on a transport failure.
func postSubscribe(ctx context.Context, c *http.Client, addr string, body []byte, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/api/realtime", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(b)), nil
}

// statusKey names an answer for the attacker's tally: "204", "503 <message>", "error: ...".
func statusKey(status int, body string, err error) string {
	if err != nil {
		return "error: " + shortErr(err)
	}
	if status/100 == 2 {
		return strconv.Itoa(status)
	}
	var pb struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	json.Unmarshal([]byte(body), &pb)
	msg := pb.Message + pb.Error
	if msg == "" {
		msg = truncate(body, 80)
	}
	return fmt.Sprintf("%d %s", status, msg)
}

// shortErr drops addresses and ports from network errors so they tally.
func shortErr(err error) string {
	s := err.Error()
	for _, k := range []string{"connection reset by peer", "broken pipe", "i/o timeout", "connection refused",
		"EOF", "context deadline exceeded", "Client.Timeout", "too many open files", "cannot assign requested address"} {
		if strings.Contains(s, k) {
			return k
		}
	}
	return truncate(s, 80)
}

// slowAuth is an auth endpoint that answers after a delay, counting the
// lookups it gets and the most in flight at once.
type slowAuth struct {
	URL     string
	Tokens  []string
	delay   time.Duration
	byToken map[string]string
	srv     *http.Server

	Lookups     atomic.Int64
	inFlight    atomic.Int64
	MaxInFlight atomic.Int64
	mu          sync.Mutex
}

func startSlowAuth(users int, delay time.Duration) (*slowAuth, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &slowAuth{URL: "http://" + l.Addr().String() + "/auth", delay: delay, byToken: map[string]string{}}
	for i := range users {
		id := fmt.Sprintf("u%014d", i)
		tok := "bench-token-" + id
		a.Tokens = append(a.Tokens, tok)
		a.byToken[tok] = id
	}
	a.srv = &http.Server{Handler: a}
	go a.srv.Serve(l)
	return a, nil
}

func (a *slowAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.Lookups.Add(1)
	n := a.inFlight.Add(1)
	defer a.inFlight.Add(-1)
	for {
		m := a.MaxInFlight.Load()
		if n <= m || a.MaxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(a.delay)
	tok := strings.TrimSpace(r.Header.Get("Authorization"))
	if len(tok) > 7 && strings.EqualFold(tok[:7], "bearer ") {
		tok = tok[7:]
	}
	id, ok := a.byToken[tok]
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"data":{},"message":"The request requires valid record authorization token.","status":401}`))
		return
	}
	json.NewEncoder(w).Encode(map[string]any{
		"token":  tok,
		"record": map[string]any{"id": id, "collectionId": "_pb_users_auth_", "collectionName": "users"},
	})
}

func (a *slowAuth) Close() { a.srv.Close() }

// encodeURIComponent escapes as JavaScript's encodeURIComponent (the SDK's topic options).
func encodeURIComponent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// filterTopic is posts/*?options={"query":{"filter":F}} as the SDK spells it.
func filterTopic(filter string) string {
	js, _ := json.Marshal(map[string]any{"query": map[string]any{"filter": filter}})
	return "posts/*?options=" + encodeURIComponent(string(js))
}
