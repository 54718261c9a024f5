package broker

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"net/http/httputil"
	"strings"
	"testing"
)

// TestFrameBytes pins every kind of frame the encoder writes, byte for byte.
func TestFrameBytes(t *testing.T) {
	t.Parallel()
	const id = "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcd"
	const epoch = "Ep0ch123"
	data := []byte(`{"record":{"id":"r1"},"action":"create"}`)
	frame := func(pos uint64, tail []byte) string {
		return string(appendIDLine(nil, id, epoch, pos)) + string(tail)
	}
	for _, tt := range []struct {
		name, got, want string
	}{
		// What PocketBase v0.40.4 writes on a fresh stream.
		{"connect", frame(0, connectFrame(id)),
			"id:" + id + "\nevent:PB_CONNECT\ndata:{\"clientId\":\"" + id + "\"}\n\n"},
		{"resumed", frame(0, resumeFrame(id, true)),
			"id:" + id + "\nevent:PB_CONNECT\ndata:{\"clientId\":\"" + id + "\",\"resumed\":true}\n\n"},
		{"not resumed", frame(0, resumeFrame(id, false)),
			"id:" + id + "\nevent:PB_CONNECT\ndata:{\"clientId\":\"" + id + "\",\"resumed\":false}\n\n"},
		{"record event", frame(42, frameTail("posts/*?options={}", data)),
			"id:" + id + "." + epoch + ".42\nevent:posts/*?options={}\ndata:" + string(data) + "\n\n"},
		{"empty data", frame(1, frameTail("custom", nil)),
			"id:" + id + "." + epoch + ".1\nevent:custom\ndata:\n\n"},
		{"heartbeat", string(heartbeatFrame), ":\n\n"},
		{"heartbeat chunk", string(heartbeatChunk), "3\r\n:\n\n\r\n"},
		{"chunk", string(appendChunk([]byte("x"), bytes.Repeat([]byte("a"), 26))), "x1a\r\n" + strings.Repeat("a", 26) + "\r\n"},
		{"body end", string(chunkedBodyEnd), "0\r\n\r\n"},
	} {
		if tt.got != tt.want {
			t.Errorf("%s:\n got %q\nwant %q", tt.name, tt.got, tt.want)
		}
	}
}

// TestFrameLengths checks the sizes the queue limit is computed from against
// the bytes actually written.
func TestFrameLengths(t *testing.T) {
	t.Parallel()
	id := newClientID()
	tail := frameTail("posts", []byte(`{"a":1}`))
	for _, pos := range []uint64{0, 1, 9, 10, 99, 100, 12345, math.MaxUint64} {
		line := appendIDLine(nil, id, "abcdefgh", pos)
		if n := idLineLen(id, "abcdefgh", pos); n != len(line) {
			t.Errorf("pos %d: idLineLen %d, line %q is %d bytes", pos, n, line, len(line))
		}
		if n := frameLen(id, "abcdefgh", pos, tail); n != len(line)+len(tail) {
			t.Errorf("pos %d: frameLen %d, want %d", pos, n, len(line)+len(tail))
		}
		if got, ok := ParseEventID(string(line[len(idPrefix) : len(line)-1])); !ok || got.ClientID != id || got.Position != pos {
			t.Errorf("pos %d: id line %q does not parse back (%+v, %v)", pos, line, got, ok)
		}
	}
}

// TestTailData checks that sendHooked's view of a tail is its data, and that
// a hook appending to it cannot overwrite the shared tail.
func TestTailData(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, data string }{
		{"posts", `{"x":1}`},
		{"PB_CONNECT", ""},
		{"posts/r1?options=" + strings.Repeat("é", 40), strings.Repeat(`"\n"`, 100)},
	} {
		tail := frameTail(tt.name, []byte(tt.data))
		before := string(tail)
		data := tailData(tail, tt.name)
		if string(data) != tt.data {
			t.Errorf("%q: data %q, want %q", tt.name, data, tt.data)
		}
		_ = append(data, "!!"...)
		if string(tail) != before {
			t.Errorf("%q: appending to the data changed the tail to %q", tt.name, tail)
		}
	}
}

// TestChunkedQueueRoundTrip queues the same frames plain (goroutine writer)
// and chunked (adopted connection) and decodes the chunked bytes with
// net/http's chunked reader: the body must be exactly the plain stream.
func TestChunkedQueueRoundTrip(t *testing.T) {
	t.Parallel()
	id := newClientID()
	small := frameTail("posts/*", []byte(`{"a":1}`))
	large := frameTail("posts", bytes.Repeat([]byte("x"), 3*sharedMin)) // referenced, not copied
	var plain, chunked frameQueue
	plain.appendOwn(connectFrame(id)) // as Adopt finds PB_CONNECT: queued before adoption
	chunked.appendChunk(connectFrame(id))
	for pos := uint64(1); pos <= 20; pos++ {
		tail := small
		if pos%3 == 0 {
			tail = large
		}
		plain.appendFrame(id, "abcdefgh", pos, ownTail(tail), false, false)
		chunked.appendFrame(id, "abcdefgh", pos, ownTail(tail), true, false)
		if pos%7 == 0 {
			plain.appendOwn(heartbeatFrame)
			chunked.appendOwn(heartbeatChunk)
		}
	}
	want := plain.take(nil)
	wire := append(chunked.take(nil), chunkedBodyEnd...)

	r := bufio.NewReader(bytes.NewReader(wire))
	body, err := io.ReadAll(httputil.NewChunkedReader(r))
	if err != nil {
		t.Fatalf("decoding %q: %v", wire, err)
	}
	if !bytes.Equal(body, want) {
		t.Fatalf("chunked body differs from the plain stream:\n got %q\nwant %q", body, want)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "\r\n" {
		t.Fatalf("after the last chunk: %q, want the body's final CRLF", rest)
	}
	if n := strings.Count(string(want), "\nevent:"); n != 20 {
		t.Fatalf("%d frames in the stream, want 20", n)
	}
	if !strings.HasPrefix(string(want), "event:PB_CONNECT\ndata:{\"clientId\":\""+id+"\"}\n\nid:"+id+".abcdefgh.1\n") {
		t.Fatalf("stream starts %q", want[:min(len(want), 120)])
	}
}
