package broker

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

// TestEventIDs: PB_CONNECT keeps PocketBase's bare client id; every event and
// custom message after it carries the broker's epoch and its position in one
// order, and ParseEventID reads them back.
func TestEventIDs(t *testing.T) {
	t.Parallel()
	b := New("ids", nil)
	c := mustConnect(t, b)
	mustSubscribe(t, b, c, "posts/*", "custom")
	b.Publish(mustEvent(t, `{"action":"create","record":{"collectionName":"posts","id":"r1"}}`))
	b.Publish(mustEvent(t, `{"action":"create","record":{"collectionName":"other","id":"o1"}}`)) // not for c: a gap
	b.SendMessage(&Message{Name: "custom", Data: json.RawMessage(`1`)})
	b.Publish(mustEvent(t, `{"action":"update","record":{"collectionName":"posts","id":"r1"}}`))

	c.mu.Lock()
	raw := string(c.queue.appendTo(nil))
	c.mu.Unlock()
	var ids []string
	for _, line := range strings.Split(raw, "\n") {
		if id, ok := strings.CutPrefix(line, "id:"); ok {
			ids = append(ids, id)
		}
	}
	if len(ids) != 4 || ids[0] != c.ID() {
		t.Fatalf("ids = %q, want PB_CONNECT's bare client id and three positioned ids", ids)
	}
	for i, want := range []uint64{1, 3, 4} {
		id, ok := ParseEventID(ids[i+1])
		if !ok || id.ClientID != c.ID() || id.Epoch != b.Epoch() || id.Position != want {
			t.Errorf("frame %d id %q = %+v, %v; want client %s epoch %s position %d", i+1, ids[i+1], id, ok, c.ID(), b.Epoch(), want)
		}
	}
	if other := New("ids", nil); other.Epoch() == b.Epoch() {
		t.Errorf("two brokers share epoch %q", b.Epoch())
	}
}

func TestParseEventIDRefuses(t *testing.T) {
	t.Parallel()
	client := strings.Repeat("a", 40)
	good := client + ".AbCd1234.42"
	if id, ok := ParseEventID(good); !ok || id.Position != 42 || id.Epoch != "AbCd1234" || id.ClientID != client {
		t.Fatalf("ParseEventID(%q) = %+v, %v", good, id, ok)
	}
	for _, bad := range []string{
		"",
		client[:39],
		client + "x",
		client + ".",
		client + ".AbCd1234",
		client + ".AbCd1234.",
		client + ".AbCd1234.0",
		client + ".AbCd1234.042",
		client + ".AbCd1234.-1",
		client + ".AbCd1234.+1",
		client + ".AbCd123.1",
		client + ".AbCd12345.1",
		client + ".AbCd-234.1",
		client + ".AbCd1234.1.2",
		client + ".AbCd1234." + strconv.FormatUint(1<<63, 10) + "0",
		client + ".AbCd1234.1 ",
		strings.Repeat("a", 39) + "é.AbCd1234.1",
		client + ".AbCd1234." + strings.Repeat("9", MaxEventIDLen),
	} {
		if id, ok := ParseEventID(bad); ok {
			t.Errorf("ParseEventID(%q) = %+v, accepted", bad, id)
		}
	}
}
