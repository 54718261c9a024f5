//go:build linux

package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ---- BENCH.md k: one node (memory) against three nodes on NATS JetStream ----

// ServeNATSCluster runs n clustered JetStream nats-servers in this process on
// free loopback ports, with their stores under dir; once JetStream can place
// a stream of n replicas it writes the client URLs (space-separated) as one
// line to ready, then blocks until stop is closed and shuts them down. The
// cluster command runs it in a child process of its own so that NATS's CPU
// is measured apart from the load generator's.
func ServeNATSCluster(dir string, n int, ready io.Writer, stop <-chan struct{}) error {
	ports, err := freePorts(2 * n)
	if err != nil {
		return err
	}
	var routes []string
	for i := range n {
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i]))
	}
	var servers []*server.Server
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}()
	var urls []string
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("bench-nats-%d", i),
			Host:       "127.0.0.1",
			Port:       ports[i],
			JetStream:  true,
			StoreDir:   filepath.Join(dir, fmt.Sprintf("n%d", i)),
			Cluster:    server.ClusterOpts{Name: "bench", Host: "127.0.0.1", Port: ports[n+i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
			NoLog:      true,
			NoSigs:     true,
		}
		s, err := server.NewServer(opts)
		if err != nil {
			return err
		}
		servers = append(servers, s)
		go s.Start()
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
	}
	for _, s := range servers {
		if !s.ReadyForConnections(20 * time.Second) {
			return errors.New("nats-server did not start")
		}
	}
	if err := waitJetStream(strings.Join(urls, ","), n, 60*time.Second); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(ready, strings.Join(urls, " ")); err != nil {
		return err
	}
	<-stop
	return nil
}

// waitJetStream waits until the cluster answers account info and can create
// (then delete) a stream of the given replicas: the meta leader is elected and
// every peer is known to it.
func waitJetStream(urls string, replicas int, timeout time.Duration) error {
	nc, err := nats.Connect(urls, nats.Timeout(2*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.MaxWait(2 * time.Second))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		_, err := js.AccountInfo()
		if err == nil {
			_, err = js.AddStream(&nats.StreamConfig{Name: "bench_ready", Subjects: []string{"bench.ready"}, Replicas: replicas})
			if err == nil {
				err = js.DeleteStream("bench_ready")
			}
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("JetStream not ready after %v: %w", timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// NATSChild is a child process running ServeNATSCluster.
type NATSChild struct {
	URLs   []string
	PID    int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}
}

// StartNATSChild runs bin with args (a command that calls ServeNATSCluster
// with its stdout as ready and stops when its stdin closes) and waits for the URLs.
func StartNATSChild(bin string, args []string, logPath string) (*NATSChild, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &NATSChild{PID: cmd.Process.Pid, cmd: cmd, stdin: stdin, exited: make(chan struct{})}
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			line <- sc.Text()
		}
		close(line)
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		cmd.Wait()
		close(c.exited)
	}()
	select {
	case l, ok := <-line:
		if ok && strings.HasPrefix(l, "nats://") {
			c.URLs = strings.Fields(l)
			return c, nil
		}
	case <-time.After(90 * time.Second):
	}
	c.Stop()
	b, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("NATS cluster did not come up: %s", strings.TrimSpace(string(b)))
}

// Alive reports whether the child still runs.
func (c *NATSChild) Alive() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// Stop closes the child's stdin and kills it if it has not exited after 5 s.
func (c *NATSChild) Stop() {
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

// NATSRealtime is the realtime block's transport lines for urls.
func NATSRealtime(urls []string, replicas int) string {
	return fmt.Sprintf("\t\ttransport nats %s {\n\t\t\treplicas %d\n\t\t}\n", strings.Join(urls, " "), replicas)
}
