// Package forward carries an HTTP request about a client to the cluster node
// that holds the client's stream, and its answer back, over the broker's
// Forward (NATS request/reply on several nodes). The node holding the client
// serves the request as if it had arrived there, from the original client IP.
package forward

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
)

// Request is a forwarded HTTP request.
type Request struct {
	Method string      `json:"method"`
	URL    string      `json:"url"` // path and query
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
	IP     string      `json:"ip,omitempty"` // the client IP the receiving node judged
}

// Response is the answer of the node that served it.
type Response struct {
	Status int         `json:"status"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// hopHeaders are not forwarded: they describe one connection.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length"}

// Encode describes r, whose body was read as body, for the node holding the client.
func Encode(r *http.Request, body []byte, ip string) []byte {
	h := r.Header.Clone()
	for _, k := range hopHeaders {
		h.Del(k)
	}
	raw, _ := json.Marshal(Request{Method: r.Method, URL: r.URL.RequestURI(), Header: h, Body: body, IP: ip})
	return raw
}

type ipKey struct{}

// ClientIP is the original client IP of a forwarded request ("" otherwise).
func ClientIP(r *http.Request) string {
	ip, _ := r.Context().Value(ipKey{}).(string)
	return ip
}

// Forwarded reports whether r arrived from another node (it must not be forwarded again).
func Forwarded(r *http.Request) bool { return r.Context().Value(ipKey{}) != nil }

// Serve decodes a forwarded request, serves it with h and encodes the answer.
func Serve(payload []byte, h http.Handler) []byte {
	var req Request
	if err := json.Unmarshal(payload, &req); err != nil {
		return encodeResponse(Response{Status: http.StatusBadRequest, Body: []byte("malformed forwarded request")})
	}
	r, err := http.NewRequestWithContext(context.WithValue(context.Background(), ipKey{}, req.IP), req.Method, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return encodeResponse(Response{Status: http.StatusBadRequest, Body: []byte(err.Error())})
	}
	r.Header = req.Header
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.RemoteAddr = req.IP + ":0"
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return encodeResponse(Response{Status: rec.status, Header: rec.header, Body: rec.body.Bytes()})
}

func encodeResponse(resp Response) []byte {
	raw, _ := json.Marshal(resp)
	return raw
}

// Write writes a forwarded answer to w.
func Write(w http.ResponseWriter, answer []byte) error {
	var resp Response
	if err := json.Unmarshal(answer, &resp); err != nil {
		return err
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.Status)
	_, err := io.Copy(w, bytes.NewReader(resp.Body))
	return err
}

// recorder is the ResponseWriter a forwarded request is served into.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(p)
}
