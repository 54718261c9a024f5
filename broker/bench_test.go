package broker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFanout9k fans one event out to 9,000 subscribers over real loopback TCP.
//
// Why 9,000 and not 10,000: both ends of every connection live in this process,
// so each subscriber costs two file descriptors (the accepted server conn that
// Serve writes to, and the dialed client conn a reader drains). The machine's
// hard RLIMIT_NOFILE is 20,000 per process and cannot be raised; 10,000
// subscribers would need 20,000+ fds. 9,000 subscribers use ~18,000, leaving
// headroom under 19,000 for the listener, the Go runtime and the test binary.
func BenchmarkFanout9k(b *testing.B) { benchmarkFanout(b, 9000, false) }

// BenchmarkFanout1k is the same with 1,000 subscribers: allocs/event should be
// the same as with 9,000 (the publish path allocates per event, not per subscriber).
func BenchmarkFanout1k(b *testing.B) { benchmarkFanout(b, 1000, false) }

// BenchmarkFanoutAdopted9k and 1k are the same with the connections adopted
// by the broker (hijack mode, the default for HTTP/1.1 in Caddy): the
// broker's writer pool instead of a goroutine per subscriber.
func BenchmarkFanoutAdopted9k(b *testing.B) { benchmarkFanout(b, 9000, true) }

// BenchmarkFanoutAdopted1k: see BenchmarkFanoutAdopted9k.
func BenchmarkFanoutAdopted1k(b *testing.B) { benchmarkFanout(b, 1000, true) }

// BenchmarkFanoutTLS1k and BenchmarkFanoutAdoptedTLS1k are the 1k benchmarks
// over TLS 1.3: a goroutine per subscriber writing through a 4 KB buffer
// (net/http's HTTP/1.1 path), against adopted TLS connections (hijack mode
// over HTTPS: each batch written by a goroutine of its own). Compare their
// ns/msg: what taking TLS streams over costs or saves per delivery.
func BenchmarkFanoutTLS1k(b *testing.B) { benchmarkFanoutOver(b, 1000, false, true, 0) }

// BenchmarkFanoutAdoptedTLS1k: see BenchmarkFanoutTLS1k.
func BenchmarkFanoutAdoptedTLS1k(b *testing.B) { benchmarkFanoutOver(b, 1000, true, true, 0) }

// BenchmarkFanoutAdopted2KB1k is BenchmarkFanoutAdopted1k with 2 KB records:
// each frame is queued by reference and counted once (sharedTail).
func BenchmarkFanoutAdopted2KB1k(b *testing.B) { benchmarkFanoutOver(b, 1000, true, false, 2048) }

// bufStream is tcpStream through a 4 KB buffer, as net/http writes.
type bufStream struct {
	c net.Conn
	w *bufio.Writer
}

func (s bufStream) Write(p []byte) (int, error)        { return s.w.Write(p) }
func (s bufStream) Flush() error                       { return s.w.Flush() }
func (s bufStream) SetWriteDeadline(t time.Time) error { return s.c.SetWriteDeadline(t) }

// tcpStream adapts the server side of a net.Conn to Stream.
type tcpStream struct{ c net.Conn }

func (s tcpStream) Write(p []byte) (int, error)        { return s.c.Write(p) }
func (s tcpStream) Flush() error                       { return nil }
func (s tcpStream) SetWriteDeadline(t time.Time) error { return s.c.SetWriteDeadline(t) }

func raiseNoFile(b *testing.B, need uint64) {
	b.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			b.Fatalf("setrlimit: %v", err)
		}
	}
	if lim.Cur < need {
		b.Skipf("RLIMIT_NOFILE is %d, need %d", lim.Cur, need)
	}
}

func benchmarkFanout(b *testing.B, subscribers int, adopt bool) {
	benchmarkFanoutOver(b, subscribers, adopt, false, 0)
}

// benchmarkFanoutOver publishes events of about 100 bytes, plus pad bytes
// (pad >= 256: frames shared by reference, counted once against max_queued_bytes).
func benchmarkFanoutOver(b *testing.B, subscribers int, adopt, overTLS bool, pad int) {
	raiseNoFile(b, uint64(2*subscribers+500))

	p := DefaultPolicy()
	p.Heartbeat = 0       // only data frames on the wire
	p.IdleTimeout = 0     // no timers firing during the run
	p.MaxClientsPerIP = 0 // every subscriber is on 127.0.0.1
	br := New("bench", p)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	var (
		frames  sync.WaitGroup // one Done per frame read (PB_CONNECT included)
		workers sync.WaitGroup // Serve and reader goroutines
		conns   []net.Conn
		bytesIn = make([]int64, subscribers)
	)
	defer func() {
		cancel()
		br.Close()
		for _, c := range conns {
			c.Close()
		}
		workers.Wait()
	}()

	frames.Add(subscribers) // the PB_CONNECT frames
	accepted := make(chan net.Conn, 256)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	for i := range subscribers {
		var cc, sc net.Conn
		cc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatalf("dial %d: %v", i, err)
		}
		sc = <-accepted
		if overTLS {
			cc, sc = handshake(b, cc, sc)
		}
		conns = append(conns, cc, sc)

		c, err := br.Connect("127.0.0.1")
		if err != nil {
			b.Fatal(err)
		}
		if err := br.SetSubscriptions(c, []string{"posts/*"}); err != nil {
			b.Fatal(err)
		}
		if adopt {
			br.Adopt(c, sc)
		} else {
			var st Stream = tcpStream{sc}
			if overTLS {
				st = bufStream{sc, bufio.NewWriterSize(sc, 4096)}
			}
			workers.Go(func() {
				r := c.Serve(ctx, st)
				br.Disconnect(c, r)
			})
		}
		workers.Go(func() {
			// Count frames by their "\n\n" terminator, across read boundaries.
			buf := make([]byte, 4096)
			prevNL := false
			for {
				n, err := cc.Read(buf)
				bytesIn[i] += int64(n)
				chunk := buf[:n]
				k := bytes.Count(chunk, []byte("\n\n"))
				if prevNL && n > 0 && chunk[0] == '\n' {
					k++
				}
				if n > 0 {
					prevNL = chunk[n-1] == '\n'
				}
				if k > 0 {
					frames.Add(-k)
				}
				if err != nil {
					if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
						b.Errorf("read: %v", err)
					}
					return
				}
			}
		})
	}
	frames.Wait() // every PB_CONNECT read: the streams are up

	extra := ""
	if pad > 0 {
		extra = `,"pad":"` + strings.Repeat("x", pad) + `"`
	}
	events := make([]*Event, b.N)
	for i := range events {
		events[i] = postEvent(b, "update", fmt.Sprintf("r%d", i), `,"title":"hello world","views":42`+extra)
	}
	// Warm up: each client's two swapped queue buffers grow to frame size on the
	// first events; measured, those one-off allocations (about 4 per client)
	// would look like a per-subscriber cost.
	for i := range 5 {
		frames.Add(subscribers)
		br.Publish(postEvent(b, "update", fmt.Sprintf("warm%d", i), `,"title":"hello world","views":42`))
		frames.Wait()
	}

	runtime.GC()
	var ms0, ms1 runtime.MemStats
	var publishMallocs uint64
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		frames.Add(subscribers)

		b.StopTimer()
		runtime.ReadMemStats(&ms0)
		b.StartTimer()
		br.Publish(events[i])
		b.StopTimer()
		runtime.ReadMemStats(&ms1)
		publishMallocs += ms1.Mallocs - ms0.Mallocs
		b.StartTimer()

		frames.Wait() // all subscribers have read this event's frame
	}
	b.StopTimer()

	elapsed := b.Elapsed()
	delivered := float64(b.N) * float64(subscribers)
	b.ReportMetric(float64(elapsed.Nanoseconds())/delivered, "ns/msg")
	b.ReportMetric(float64(publishMallocs)/float64(b.N), "allocs/event")
	b.ReportMetric(delivered/elapsed.Seconds(), "msgs/s")
	if st := br.Stats(); st.Evictions[ReasonQueueFull]+st.Evictions[ReasonWriteTimeout]+st.Evictions[ReasonWriteError] != 0 {
		b.Fatalf("evictions during the benchmark: %v", st.Evictions)
	}
}
