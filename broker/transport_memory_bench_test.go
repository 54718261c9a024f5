package broker

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// BenchmarkMemoryTransportHeap measures what the replay log really holds per
// MiB of events: a broker keeps heldMiB of record JSON (the records as the
// publisher encoded them) in its log, each event also carrying the payload
// fan-out renders for a plain subscriber, and the heap grows by heap-B/MiB.
// est-B/MiB is the log's own estimate of the same events, the one that
// resume_bytes caps; heap/est above 1 means the cap lets more memory stay
// alive than it says.
func BenchmarkMemoryTransportHeap(b *testing.B) {
	const heldMiB = 4
	for _, size := range []int{128, 1 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("record=%dB", size), func(b *testing.B) {
			var heap, est float64
			for range b.N {
				h, e := logHeap(b, size, heldMiB<<20)
				heap += h
				est += e
			}
			heap /= float64(b.N)
			est /= float64(b.N)
			b.ReportMetric(heap, "heap-B/MiB")
			b.ReportMetric(est, "est-B/MiB")
			b.ReportMetric(heap/est, "heap/est")
		})
	}
}

// logHeap publishes events of about size bytes of record JSON until held
// bytes are logged and returns the heap growth and the log's estimate, each
// per MiB of record JSON held.
func logHeap(b *testing.B, size, held int) (heapPerMiB, estPerMiB float64) {
	b.StopTimer()
	p := DefaultPolicy()
	p.ResumeWindow, p.ResumeBytes = time.Hour, 0 // keep everything: the cap is what is measured
	br := New("heap", p)
	// The record of the bench load generator, padded to size.
	raw := func(i int) []byte {
		head := fmt.Sprintf(`{"action":"create","record":{"id":"r%d","collectionName":"posts","pad":"`, i)
		tail := fmt.Sprintf(`","pub":1,"seq":%d,"title":"benchmark event","ts":1764600000000000000}}`, i)
		pad := max(size-len(head)-len(tail)+len(`{"action":"create","record":`)+1, 0)
		return []byte(head + strings.Repeat("x", pad) + tail)
	}
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	b.StartTimer()
	payload := 0
	for i := 0; payload < held; i++ {
		ev, err := DecodeEvent(raw(i))
		if err != nil {
			b.Fatal(err)
		}
		ev.payload("", nil, 0, nil) // what fan-out to a plain subscriber leaves on the event
		br.Publish(ev)
		payload += len(ev.recordJSON)
	}
	b.StopTimer()
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	records, estimate := br.Transport().(*MemoryTransport).Held()
	if records == 0 {
		b.Fatal("the log kept nothing")
	}
	mib := float64(payload) / (1 << 20)
	heapPerMiB = float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / mib
	estPerMiB = float64(estimate) / mib
	runtime.KeepAlive(br)
	b.StartTimer()
	return heapPerMiB, estPerMiB
}
