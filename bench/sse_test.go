//go:build linux

package bench

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

type recordedEvent struct{ event, id, data string }

type eventRecorder struct {
	events []recordedEvent
	body   []byte
}

func (r *eventRecorder) onEvent(event, id, data []byte) {
	r.events = append(r.events, recordedEvent{string(event), string(id), string(data)})
}

// streamDecoder chains the chunk decoder and the SSE parser as a subscriber connection does.
type streamDecoder struct {
	chunks chunkDecoder
	sse    sseParser
	rec    eventRecorder
}

func (d *streamDecoder) body(p []byte) {
	d.rec.body = append(d.rec.body, p...)
	d.sse.feed(p, &d.rec)
}

// chunk encodes payload as HTTP chunks cut at the given sizes, then the last chunk.
func chunk(payload string, sizes func() int, ext string) string {
	var b strings.Builder
	for len(payload) > 0 {
		n := min(sizes(), len(payload))
		fmt.Fprintf(&b, "%x%s\r\n%s\r\n", n, ext, payload[:n])
		payload = payload[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

// feedSplit feeds wire to fn in pieces cut at random points, and reports the bytes left after the end.
func feedSplit(t *testing.T, r *rand.Rand, wire string, maxPiece int, fn func(p []byte) (int, bool, error)) (ended bool, rest string) {
	t.Helper()
	for len(wire) > 0 {
		n := 1 + r.IntN(maxPiece)
		n = min(n, len(wire))
		used, done, err := fn([]byte(wire[:n]))
		if err != nil {
			t.Fatalf("feed: %v", err)
		}
		if done {
			return true, wire[used:]
		}
		if used != n {
			t.Fatalf("used %d of %d bytes without ending", used, n)
		}
		wire = wire[n:]
	}
	return false, ""
}

func TestSSEOverChunkedAnySplit(t *testing.T) {
	t.Parallel()
	stream := "id:Qm2labcdefghijklmnopqrstuvwxyz0123456789\nevent:PB_CONNECT\ndata:{\"clientId\":\"Qm2l\"}\n\n" +
		":\n\n" + // heartbeat
		"id:Qm2l\nevent:posts/*\ndata:{\"record\":{\"seq\":1,\"ts\":17},\"action\":\"create\"}\n\n" +
		"id: urn:uuid:1\r\ndata: line one\r\ndata: line two\r\n\r\n" + // Mercure style, CRLF
		"event:ignored-no-data\n\n" +
		"retry:100\ndata:last\n\n"
	want := []recordedEvent{
		{"PB_CONNECT", "Qm2labcdefghijklmnopqrstuvwxyz0123456789", `{"clientId":"Qm2l"}`},
		{"posts/*", "Qm2l", `{"record":{"seq":1,"ts":17},"action":"create"}`},
		{"", "urn:uuid:1", "line one\nline two"},
		{"", "urn:uuid:1", "last"}, // id persists, as the SSE spec says
	}
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 7))
		ext := ""
		if seed%5 == 0 {
			ext = ";name=value"
		}
		wire := chunk(stream, func() int { return 1 + r.IntN(40) }, ext) + "HTTP/1.1 next"
		var d streamDecoder
		ended, rest := feedSplit(t, r, wire, 1+int(seed%64), func(p []byte) (int, bool, error) {
			return d.chunks.feed(p, &d)
		})
		if !ended {
			t.Fatalf("seed %d: body did not end at the last chunk", seed)
		}
		if rest != "HTTP/1.1 next" {
			t.Fatalf("seed %d: bytes after the body = %q", seed, rest)
		}
		if string(d.rec.body) != stream {
			t.Fatalf("seed %d: decoded body differs:\n%q\n%q", seed, d.rec.body, stream)
		}
		if len(d.rec.events) != len(want) {
			t.Fatalf("seed %d: got %d events %+v, want %d", seed, len(d.rec.events), d.rec.events, len(want))
		}
		for i := range want {
			if d.rec.events[i] != want[i] {
				t.Fatalf("seed %d: event %d = %+v, want %+v", seed, i, d.rec.events[i], want[i])
			}
		}
		if d.sse.Comments != 1 {
			t.Fatalf("seed %d: %d comments, want 1", seed, d.sse.Comments)
		}
	}
}

func TestChunkDecoderRejectsMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, wire string }{
		{"non-hex size", "zz\r\nab\r\n"},
		{"missing CRLF after data", "2\r\nabXY"},
		{"CR without LF", "2\rab"},
		{"size overflow", "1234567890abcdef0\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var d streamDecoder
			if _, _, err := d.chunks.feed([]byte(tc.wire), &d); err == nil {
				t.Fatalf("no error for %q", tc.wire)
			}
		})
	}
}

func TestRespHeadSplitAnywhere(t *testing.T) {
	t.Parallel()
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\ntransfer-encoding: chunked\r\nX: y\r\n\r\n"
	for cut := 0; cut <= len(head); cut++ {
		var h respHead
		wire := head + "5\r\n"
		n1, done, err := h.feed([]byte(wire[:cut]))
		if err != nil || (done && cut < len(head)) {
			t.Fatalf("cut %d: first part: done=%v err=%v", cut, done, err)
		}
		used := n1
		if !done {
			n2, done2, err := h.feed([]byte(wire[cut:]))
			if err != nil || !done2 {
				t.Fatalf("cut %d: head not complete: %v", cut, err)
			}
			used += n2
		}
		if used != len(head) {
			t.Fatalf("cut %d: used %d bytes, head is %d", cut, used, len(head))
		}
		if h.Status != 200 || !h.Chunked || h.ContentLength != -1 {
			t.Fatalf("cut %d: parsed %+v", cut, h)
		}
	}
}

func TestRespHeadFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		head    string
		status  int
		length  int64
		close   bool
		wantErr bool
	}{
		{"HTTP/1.1 204 No Content\r\nVary: Origin\r\n\r\n", 204, -1, false, false},
		{"HTTP/1.1 404 Not Found\r\nContent-Length: 72\r\nConnection: close\r\n\r\n", 404, 72, true, false},
		{"HTTP/1.0 200 OK\r\ncontent-length:3\r\n\r\n", 200, 3, false, false},
		{"SSH-2.0 nope\r\n\r\n", 0, 0, false, true},
		{"HTTP/1.1 200 OK\r\nContent-Length: -4\r\n\r\n", 0, 0, false, true},
	}
	for _, tc := range tests {
		var h respHead
		n, done, err := h.feed([]byte(tc.head + "rest"))
		if tc.wantErr {
			if err == nil {
				t.Errorf("%q: no error", tc.head)
			}
			continue
		}
		if err != nil || !done || n != len(tc.head) {
			t.Fatalf("%q: n=%d done=%v err=%v", tc.head, n, done, err)
		}
		if h.Status != tc.status || h.ContentLength != tc.length || h.Close != tc.close {
			t.Errorf("%q: got status %d length %d close %v", tc.head, h.Status, h.ContentLength, h.Close)
		}
	}
}

func TestSSEFieldsSurviveBufferReuse(t *testing.T) {
	t.Parallel()
	// The caller reuses its read buffer; fields of an event that spans reads must be copies.
	var p sseParser
	var rec eventRecorder
	buf := []byte("event:posts/*\ndata:{\"a\"")
	p.feed(buf, &rec)
	copy(buf, bytes.Repeat([]byte("X"), len(buf))) // overwrite as the next read would
	p.feed([]byte(":1}\n\n"), &rec)
	if len(rec.events) != 1 || rec.events[0].event != "posts/*" || rec.events[0].data != `{"a":1}` {
		t.Fatalf("got %+v", rec.events)
	}
}

func TestRecordStamp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		data    string
		pub     int
		seq, ts int64
		ok      bool
	}{
		{"ours, keys sorted", `{"record":{"collectionName":"posts","id":"b0x7","pub":3,"seq":7,"title":"benchmark event","ts":1764190000123456789},"action":"create"}`, 3, 7, 1764190000123456789, true},
		{"pocketbase float ts", `{"record":{"author":"","collectionId":"pbc_1","collectionName":"posts","created":"2026-11-26 21:00:00.000Z","id":"abc","pub":1,"seq":12,"title":"benchmark event","ts":1.764190000123456e+18,"updated":"2026-11-26 21:00:00.000Z"},"action":"create"}`, 1, 12, 1764190000123456000, true},
		{"mercure, no pub", `{"id":"b0x1","seq":1,"title":"x","ts":"42"}`, 0, 1, 42, true},
		{"not ours", `{"clientId":"abc"}`, 0, 0, 0, false},
		{"ts but no seq", `{"ts":5}`, 0, 0, 0, false},
		{"seq not a number", `{"seq":"x","ts":5}`, 0, 0, 0, false},
	}
	for _, tc := range tests {
		pub, seq, ts, ok := recordStamp([]byte(tc.data))
		if ok != tc.ok || (ok && (pub != tc.pub || seq != tc.seq || ts != tc.ts)) {
			t.Errorf("%s: got pub %d seq %d ts %d ok %v, want %d %d %d %v", tc.name, pub, seq, ts, ok, tc.pub, tc.seq, tc.ts, tc.ok)
		}
	}
}
