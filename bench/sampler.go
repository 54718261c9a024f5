//go:build linux

package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTick is USER_HZ: /proc/PID/stat counts CPU time in 1/100 s on Linux.
const clockTick = 100

// ProcSample is one reading of a process from /proc.
type ProcSample struct {
	At      time.Time
	RSS     int64         // bytes
	CPU     time.Duration // utime + stime, all threads
	SysCPU  time.Duration // stime alone: the kernel's share (on loopback it includes the receiver's TCP work)
	Threads int
	SysR    int64 // read-like syscalls (read, recv...), /proc/PID/io syscr
	SysW    int64 // write-like syscalls (write, writev, send...), syscw
}

// ReadProc reads /proc/PID/stat, status and io.
func ReadProc(pid int) (ProcSample, error) {
	s := ProcSample{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 22 { // f[0] is field 3 (state)
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(utime+stime) * time.Second / clockTick
	s.SysCPU = time.Duration(stime) * time.Second / clockTick
	s.Threads, _ = strconv.Atoi(f[17])
	rssPages, _ := strconv.ParseInt(f[21], 10, 64)
	s.RSS = rssPages * int64(os.Getpagesize())
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		for _, line := range strings.Split(string(io), "\n") {
			k, v, ok := strings.Cut(line, ": ")
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			switch {
			case !ok:
			case k == "syscr":
				s.SysR = n
			case k == "syscw":
				s.SysW = n
			}
		}
	}
	return s, nil
}

// Sampler reads a process every interval and keeps the peak RSS and thread count.
type Sampler struct {
	pid      int
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	peakRSS  int64
	peakThr  int
	lastErr  error
	nSamples int
}

// StartSampler samples pid every interval until Stop.
func StartSampler(pid int, interval time.Duration) *Sampler {
	s := &Sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sample()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *Sampler) sample() {
	p, err := ReadProc(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.lastErr = err
		return
	}
	s.nSamples++
	s.peakRSS = max(s.peakRSS, p.RSS)
	s.peakThr = max(s.peakThr, p.Threads)
}

// ResetPeak starts a new peak window.
func (s *Sampler) ResetPeak() {
	s.mu.Lock()
	s.peakRSS, s.peakThr = 0, 0
	s.mu.Unlock()
	s.sample()
}

// Peak is the highest RSS and thread count since the last reset.
func (s *Sampler) Peak() (rss int64, threads int) {
	s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peakRSS, s.peakThr
}

// Stop ends sampling.
func (s *Sampler) Stop() {
	close(s.stop)
	<-s.done
}

// Goroutines reads go_goroutines from a Caddy admin endpoint's /metrics.
func Goroutines(adminAddr string) (int, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	io.Copy(io.Discard, resp.Body)
	return 0, fmt.Errorf("no go_goroutines in %s/metrics", adminAddr)
}
