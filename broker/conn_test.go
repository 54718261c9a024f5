package broker

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// adoptedPair adopts the server side of a loopback connection made by pair
// for c and returns the peer's side.
func adoptedPair(t *testing.T, b *Broker, c *Client, pair pairFunc) net.Conn {
	t.Helper()
	srv, peer := pair(t)
	b.Adopt(c, srv)
	return peer
}

// pairFunc makes both ends of a loopback connection.
type pairFunc func(t *testing.T) (server, peer net.Conn)

// forEachConn runs test on a plain TCP connection and on TLS over TCP (whose
// writes block, so the broker writes it from a goroutine per batch).
func forEachConn(t *testing.T, test func(t *testing.T, pair pairFunc)) {
	for _, k := range []struct {
		name string
		pair pairFunc
	}{{"tcp", tcpPair}, {"tls", tlsPair}} {
		t.Run(k.name, func(t *testing.T) { test(t, k.pair) })
	}
}

// tlsPair is tcpPair with a completed TLS 1.3 handshake on top, as a
// hijacked HTTPS connection is.
func tlsPair(t *testing.T) (server, peer net.Conn) {
	t.Helper()
	rawS, rawP := tcpPair(t)
	cli, srv := handshake(t, rawP, rawS)
	t.Cleanup(func() { cli.Close() })
	return srv, cli
}

// handshake puts TLS 1.3 on both ends of a connection and completes the handshake.
func handshake(t testing.TB, rawClient, rawServer net.Conn) (client, server net.Conn) {
	t.Helper()
	srv := tls.Server(rawServer, &tls.Config{Certificates: []tls.Certificate{testCert(t)}})
	cli := tls.Client(rawClient, &tls.Config{InsecureSkipVerify: true})
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return cli, srv
}

var (
	certOnce sync.Once
	cert     tls.Certificate
	certErr  error
)

// testCert is a self-signed certificate for 127.0.0.1, made once.
func testCert(t testing.TB) tls.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			certErr = err
			return
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		cert, certErr = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, err
	})
	if certErr != nil {
		t.Fatal(certErr)
	}
	return cert
}

// socketOf is the TCP connection under a plain or TLS one.
func socketOf(c net.Conn) *net.TCPConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	return c.(*net.TCPConn)
}

// tcpPair returns both ends of a loopback TCP connection; the peer's end is
// closed when the test ends.
func tcpPair(t *testing.T) (server, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return server, peer
}

func TestAdoptedFramesAreChunks(t *testing.T) {
	forEachConn(t, func(t *testing.T, pair pairFunc) {
		p := DefaultPolicy()
		p.Heartbeat = 0
		b := New("adopt", p)
		t.Cleanup(b.Close)
		c := mustConnect(t, b)
		mustSubscribe(t, b, c, "posts/*")
		peer := adoptedPair(t, b, c, pair)
		b.Publish(postEvent(t, "create", "r1", ""))
		b.Disconnect(c, ReasonDisconnected)

		got, err := io.ReadAll(peer)
		if err != nil {
			t.Fatal(err)
		}
		connect := connectFrameFor(c.ID())
		event := "id:" + c.ID() + "." + b.Epoch() + ".1\nevent:posts/*\n" +
			`data:{"record":{"collectionId":"pbc_posts","collectionName":"posts","id":"r1"},"action":"create"}` + "\n\n"
		// PB_CONNECT (queued before adoption) and the event may share a chunk or not;
		// decode the chunked body and check it ends with the terminating chunk.
		body, ended := decodeChunked(t, string(got))
		if body != connect+event || !ended {
			t.Fatalf("chunked body %q (ended %v)\nwant %q", got, ended, connect+event)
		}
		if _, ok := b.Client(c.ID()); ok {
			t.Fatal("client still registered")
		}
	})
}

func decodeChunked(t *testing.T, s string) (string, bool) {
	t.Helper()
	r := bufio.NewReader(strings.NewReader(s))
	var body strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return body.String(), false
		}
		var n int
		if _, err := fmt.Sscanf(strings.TrimSpace(line), "%x", &n); err != nil {
			t.Fatalf("bad chunk header %q in %q", line, s)
		}
		if n == 0 {
			rest, _ := io.ReadAll(r)
			return body.String(), string(rest) == "\r\n"
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil || string(buf[n:]) != "\r\n" {
			t.Fatalf("bad chunk of %d bytes in %q", n, s)
		}
		body.Write(buf[:n])
	}
}

func TestAdoptedHangupForgetsClient(t *testing.T) {
	forEachConn(t, func(t *testing.T, pair pairFunc) {
		b := New("adopt", nil)
		t.Cleanup(b.Close)
		c := mustConnect(t, b)
		mustSubscribe(t, b, c, "posts/*")
		peer := adoptedPair(t, b, c, pair)
		peer.Close() // no write is pending: only the hangup watcher can notice
		if err := waitUntil(func() bool { _, ok := b.Client(c.ID()); return !ok }); err != nil {
			t.Fatalf("client still registered after its peer hung up: %v", err)
		}
		if b.Stats().Subscriptions != 0 {
			t.Fatalf("subscriptions left: %d", b.Stats().Subscriptions)
		}
	})
}

// A peer that stops reading is evicted by write_timeout even though the
// kernel keeps taking a little more now and then: a batch must go out in time.
func TestAdoptedStalledPeerEvictedByWriteTimeout(t *testing.T) {
	forEachConn(t, func(t *testing.T, pair pairFunc) {
		p := DefaultPolicy()
		p.Heartbeat = 0
		p.WriteTimeout = 300 * time.Millisecond
		p.ClientQueue = 256 << 20 // only the write timeout can evict
		b := New("adopt", p)
		t.Cleanup(b.Close)
		c := mustConnect(t, b)
		mustSubscribe(t, b, c, "posts/*")
		_ = adoptedPair(t, b, c, pair) // never read
		big := strings.Repeat("x", 64<<10)
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; ; i++ {
			if _, ok := b.Client(c.ID()); !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("stalled peer not evicted within 20s")
			}
			b.Publish(postEvent(t, "update", fmt.Sprint("r", i), `,"blob":"`+big+`"`))
			time.Sleep(5 * time.Millisecond)
		}
		if n := b.Stats().Evictions[ReasonWriteTimeout]; n != 1 {
			t.Fatalf("write_timeout evictions = %d (%v)", n, b.Stats().Evictions)
		}
	})
}

// What a writer has taken but not yet written counts against client_queue.
func TestAdoptedUnsentCountsAgainstQueue(t *testing.T) {
	forEachConn(t, func(t *testing.T, pair pairFunc) {
		p := DefaultPolicy()
		p.Heartbeat = 0
		p.WriteTimeout = time.Minute
		p.ClientQueue = 1 << 20
		b := New("adopt", p)
		t.Cleanup(b.Close)
		c := mustConnect(t, b)
		mustSubscribe(t, b, c, "posts/*")
		_ = adoptedPair(t, b, c, pair) // never read
		big := strings.Repeat("y", 32<<10)
		for i := 0; i < 4000; i++ {
			b.Publish(postEvent(t, "update", fmt.Sprint("r", i), `,"blob":"`+big+`"`))
			if _, ok := b.Client(c.ID()); !ok {
				break
			}
			time.Sleep(time.Millisecond)
		}
		if n := b.Stats().Evictions[ReasonQueueFull]; n != 1 {
			t.Fatalf("queue_full evictions = %d (%v)", n, b.Stats().Evictions)
		}
		if sent := c.bytesOut.Load(); sent > 64<<20 {
			t.Fatalf("%d bytes were written to a peer that never reads: the queue is not bounded", sent)
		}
	})
}

// A stream adopted after its broker was closed (a request still in flight
// during a config unload) is closed, not a panic.
func TestAdoptAfterClose(t *testing.T) {
	forEachConn(t, func(t *testing.T, pair pairFunc) {
		b := New("adopt", nil)
		b.Close()
		c := mustConnect(t, b)
		peer := adoptedPair(t, b, c, pair)
		if _, err := io.ReadAll(peer); err != nil {
			t.Fatalf("peer read: %v", err)
		}
		if _, ok := b.Client(c.ID()); ok {
			t.Fatal("client still registered")
		}
	})
}

// stalledAndBehind is a broker with max_queued_bytes off and two clients:
// stalled, adopted on a socket whose peer never reads, subscribed to
// posts/*, and behind, which nobody writes for (as when the writers are
// busy), subscribed to behindCollection/*. publish sends 4 KB updates to a
// collection until bytes are out and returns how many.
func stalledAndBehind(t *testing.T, pair pairFunc, behindCollection string) (b *Broker, p *Policy, stalled, behind *Client, publish func(collection string, bytes int) int) {
	p = DefaultPolicy()
	p.Heartbeat, p.WriteTimeout = 0, time.Minute
	p.ClientQueue, p.MaxQueuedBytes = 64<<20, 0
	b = New("stalled-and-behind", p)
	t.Cleanup(b.Close)
	stalled, behind = mustConnect(t, b), mustConnect(t, b)
	mustSubscribe(t, b, stalled, "posts/*")
	mustSubscribe(t, b, behind, behindCollection+"/*")
	peer := adoptedPair(t, b, stalled, pair) // never read
	_ = socketOf(peer).SetReadBuffer(4096)
	pad := strings.Repeat("z", 4<<10)
	i := 0
	publish = func(collection string, bytes int) int {
		n := 0
		for ; n < bytes; i++ {
			b.Publish(mustEvent(t, fmt.Sprintf(`{"action":"update","record":{"id":"r%d","collectionName":%q,"pad":%q}}`, i, collection, pad)))
			n += len(pad)
		}
		return n
	}
	return b, p, stalled, behind, publish
}

// Over max_queued_bytes a client whose socket refuses bytes goes before one
// whose queue is larger but whose stream would take it (here: one nobody has
// written for yet, as when the writers are busy): the first stopped reading,
// the second only fell behind. They subscribe to different collections, so
// that each holds frames of its own (a frame both held would stay in memory
// whoever of them went).
func TestMaxQueuedBytesEvictsRefusingStreamsFirst(t *testing.T) {
	forEachConn(t, func(t *testing.T, pair pairFunc) {
		b, p, stalled, behind, publish := stalledAndBehind(t, pair, "notes")
		pad := strings.Repeat("z", 4<<10)
		refusing := func() bool {
			// Give the writer a moment to try; a blocking (TLS) write counts once stuck for stuckWrite.
			for deadline := time.Now().Add(stuckWrite + 100*time.Millisecond); time.Now().Before(deadline); {
				if stalled.pendingBytes().refusing {
					return true
				}
				time.Sleep(5 * time.Millisecond)
			}
			return false
		}
		published := 0
		for published += publish("posts", len(pad)); !refusing(); published += publish("posts", len(pad)) {
			if published > 32<<20 {
				t.Fatal("the socket of a peer that never reads took 32 MB")
			}
		}
		// The stalled client's backlog, then the other's: twice as large.
		publish("posts", published)
		a := stalled.pendingBytes().n
		publish("notes", 2*a)
		bb := behind.pendingBytes().n
		if a >= bb {
			t.Fatalf("pending: stalled %d, behind %d", a, bb)
		}
		if !refusing() {
			t.Fatal("the stalled client's socket stopped refusing")
		}
		p2 := *p
		p2.MaxQueuedBytes = queuedMemory(b)
		b.SetPolicy(&p2)
		// Over the budget (the stalled socket may still take a little, so
		// publish until the check finds the broker over it).
		for i := 0; i < 64 && !stalled.isClosed() && !behind.isClosed(); i++ {
			publish("posts", int(p2.MaxQueuedBytes)/16+len(pad))
			publish("notes", int(p2.MaxQueuedBytes)/16+len(pad))
		}

		if got := stalled.closeReason(); got != ReasonQueuedBytes {
			t.Fatalf("stalled client: closed %q, want %q", got, ReasonQueuedBytes)
		}
		if behind.isClosed() {
			t.Fatalf("the client that only fell behind was evicted (%q)", behind.closeReason())
		}
		if n := b.Stats().Evictions[ReasonQueuedBytes]; n != 1 {
			t.Fatalf("queued_bytes evictions = %d", n)
		}
	})
}

// The bytes owed to all clients (a shared frame counted per client) are held
// against max_queued_bytes too, but only stalled streams (nothing taken for
// stalledFor) pay for them: with the memory well under the budget and the
// owed bytes over it, the stream that stopped reading goes and the one that
// only fell behind stays, however much more it holds.
func TestMaxQueuedBytesOwedEvictsOnlyStalledStreams(t *testing.T) {
	forEachConn(t, func(t *testing.T, pair pairFunc) {
		b, p, stalled, behind, publishTo := stalledAndBehind(t, pair, "posts")
		pad := strings.Repeat("z", 4<<10)
		published := 0
		publish := func(bytes int) { published += publishTo("posts", bytes) }
		for publish(256 << 10); !stalled.pendingBytes().refusing; publish(len(pad)) {
			if published > 32<<20 {
				t.Fatal("the stalled stream never counted as refusing")
			}
			time.Sleep(20 * time.Millisecond)
		}
		for deadline := time.Now().Add(stalledFor + time.Second); !stalled.pendingBytes().stalled; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the stream refusing bytes did not count as stalled after %v", stalledFor)
			}
		}
		mem, owed := queuedMemory(b), int64(stalled.pendingBytes().n+behind.pendingBytes().n)
		if owed < mem*3/2 {
			t.Fatalf("memory %d, owed %d: the frames are not shared", mem, owed)
		}
		p2 := *p
		p2.MaxQueuedBytes = (mem + owed) / 2 // the memory fits, the owed bytes do not
		b.SetPolicy(&p2)
		for n := 0; n < 64 && !stalled.isClosed(); n++ {
			publish(int(p2.MaxQueuedBytes)/8 + len(pad))
		}
		if got := stalled.closeReason(); got != ReasonQueuedBytes {
			t.Fatalf("stalled stream: closed %q, want %q", got, ReasonQueuedBytes)
		}
		if behind.isClosed() {
			t.Fatalf("the stream that only fell behind was evicted (%q)", behind.closeReason())
		}
	})
}
