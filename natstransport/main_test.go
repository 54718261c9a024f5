package natstransport

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// runServer starts a JetStream-enabled nats-server on 127.0.0.1 (port 0 picks
// one; a fixed port lets a test restart it where clients expect it).
func runServer(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func url(port int) string { return fmt.Sprintf("nats://127.0.0.1:%d", port) }
