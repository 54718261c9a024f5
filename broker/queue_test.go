package broker

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// Clients that do not read hold references to the shared frame tails, not
// copies: 1,000 of them with 1 MB of events pending each cost a few MB, not 1 GB.
func TestStalledClientsShareFrames(t *testing.T) {
	p := DefaultPolicy()
	p.ClientQueue, p.MaxQueuedBytes, p.MaxClientsPerIP = 2<<20, 0, 0
	b := New("shared-frames", p)
	clients := make([]*Client, 1000)
	for i := range clients {
		clients[i] = mustConnect(t, b)
		mustSubscribe(t, b, clients[i], "posts/*")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	pad := strings.Repeat("x", 20<<10)
	for i := range 50 {
		b.Publish(mustEvent(t, fmt.Sprintf(`{"action":"create","record":{"id":"r%d","collectionName":"posts","pad":%q}}`, i, pad)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	pending := 0
	for _, c := range clients {
		pending += c.Pending()
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	if pending < 1000*50*(20<<10) || grown > 64<<20 {
		t.Fatalf("%d MB pending across clients held in %d MB of heap", pending>>20, grown>>20)
	}
	// What a client's writer takes is every frame, byte for byte.
	want := "id:" + clients[0].ID() + "\nevent:posts/*\ndata:{\"record\":{"
	if got := drain(clients[7]); !strings.Contains(got, strings.Replace(want, clients[0].ID(), clients[7].ID(), 1)) || strings.Count(got, "\n\n") != 51 {
		t.Fatalf("drained %d bytes, %d frames", len(got), strings.Count(got, "\n\n"))
	}
}
