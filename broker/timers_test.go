package broker

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// bubbleServe starts Serve inside a synctest bubble and returns the stream and a
// function reporting Serve's result so far ("" while running).
func bubbleServe(t *testing.T, p *Policy) (*Broker, *Client, *recStream, func() string, context.CancelFunc) {
	t.Helper()
	b := New("t", p)
	c := mustConnect(t, b)
	mustSubscribe(t, b, c, "posts/*")
	s := &recStream{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan string, 1)
	go func() {
		r := c.Serve(ctx, s)
		b.Disconnect(c, r)
		done <- r
	}()
	var result string
	return b, c, s, func() string {
		if result == "" {
			select {
			case result = <-done:
			default:
			}
		}
		return result
	}, cancel
}

func TestHeartbeatAfterSilence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPolicy()
		p.Heartbeat = 15 * time.Second
		p.IdleTimeout = 0
		b, c, s, result, cancel := bubbleServe(t, p)
		defer cancel()
		synctest.Wait()
		connect := connectFrameFor(c.ID())
		if s.String() != connect {
			t.Fatalf("start: %q", s.String())
		}
		time.Sleep(15*time.Second - time.Nanosecond)
		synctest.Wait()
		if s.String() != connect {
			t.Fatalf("heartbeat before 15s of silence: %q", s.String())
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if s.String() != connect+":\n\n" {
			t.Fatalf("after 15s: %q", s.String())
		}
		// A delivered message postpones the next heartbeat.
		time.Sleep(10 * time.Second)
		b.Publish(postEvent(t, "create", "r1", ""))
		synctest.Wait()
		afterMsg := s.String()
		if strings.Count(afterMsg, ":\n\n") != 1 || !strings.HasSuffix(afterMsg, "\"action\":\"create\"}\n\n") {
			t.Fatalf("after message: %q", afterMsg)
		}
		time.Sleep(15*time.Second - time.Nanosecond)
		synctest.Wait()
		if s.String() != afterMsg {
			t.Fatalf("heartbeat less than 15s after a message: %q", s.String())
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if s.String() != afterMsg+":\n\n" {
			t.Fatalf("second heartbeat: %q", s.String())
		}
		if r := result(); r != "" {
			t.Fatalf("stream ended: %q", r)
		}
		cancel()
		synctest.Wait()
		if r := result(); r != ReasonClientGone {
			t.Fatalf("reason %q", r)
		}
	})
}

func TestHeartbeatOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPolicy()
		p.Heartbeat = 0
		p.IdleTimeout = 0
		_, c, s, _, cancel := bubbleServe(t, p)
		defer cancel()
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		if s.String() != connectFrameFor(c.ID()) {
			t.Fatalf("got %q", s.String())
		}
	})
}

// Heartbeats do not count as activity: a subscribed client that gets no message is dropped.
func TestIdleTimeoutIgnoresHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPolicy()
		p.IdleTimeout = time.Minute
		p.Heartbeat = 10 * time.Second
		b, _, s, result, cancel := bubbleServe(t, p)
		defer cancel()
		time.Sleep(time.Minute - time.Nanosecond)
		synctest.Wait()
		if r := result(); r != "" {
			t.Fatalf("ended early: %q", r)
		}
		if n := strings.Count(s.String(), ":\n\n"); n != 5 {
			t.Fatalf("%d heartbeats in 59.9s, want 5", n)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if r := result(); r != ReasonIdleTimeout {
			t.Fatalf("reason %q, want %q", r, ReasonIdleTimeout)
		}
		if st := b.Stats(); st.Clients != 0 || st.Evictions[ReasonIdleTimeout] != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestIdleTimeoutResetByDeliveredMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPolicy()
		p.IdleTimeout = time.Minute
		p.Heartbeat = 0
		b, _, _, result, cancel := bubbleServe(t, p)
		defer cancel()
		time.Sleep(40 * time.Second)
		b.Publish(postEvent(t, "create", "r1", "")) // delivered at 40s: idle until 100s
		time.Sleep(40 * time.Second)
		b.SendMessage(&Message{Name: "posts/*", Data: []byte(`1`)}) // delivered at 80s: idle until 140s
		time.Sleep(time.Minute - time.Nanosecond)
		synctest.Wait()
		if r := result(); r != "" {
			t.Fatalf("ended at %v although messages were delivered: %q", 140*time.Second-time.Nanosecond, r)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if r := result(); r != ReasonIdleTimeout {
			t.Fatalf("reason %q", r)
		}
	})
}

// A message queued for an unsubscribed topic is never delivered, so it does not reset the timer.
func TestIdleTimeoutNotResetByUndeliveredEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPolicy()
		p.IdleTimeout = time.Minute
		b, _, _, result, cancel := bubbleServe(t, p)
		defer cancel()
		for range 5 {
			time.Sleep(10 * time.Second)
			b.Publish(mustEvent(t, `{"action":"create","record":{"id":"x","collectionName":"other"}}`))
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if r := result(); r != ReasonIdleTimeout {
			t.Fatalf("reason %q", r)
		}
	})
}

func TestMaxLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPolicy()
		p.MaxLifetime = 30 * time.Minute
		p.IdleTimeout = 5 * time.Minute
		p.Heartbeat = 15 * time.Second
		b, _, s, result, cancel := bubbleServe(t, p)
		defer cancel()
		// Busy client: a message every minute keeps the idle timer away.
		for i := range 29 {
			time.Sleep(time.Minute)
			b.Publish(postEvent(t, "update", "r1", `,"n":`+strconv.Itoa(i)))
		}
		time.Sleep(time.Minute - time.Nanosecond)
		synctest.Wait()
		if r := result(); r != "" {
			t.Fatalf("ended before max lifetime: %q", r)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if r := result(); r != ReasonMaxLifetime {
			t.Fatalf("reason %q, want %q", r, ReasonMaxLifetime)
		}
		if n := len(dataFrames(s.frames())); n != 29 {
			t.Fatalf("%d messages delivered", n)
		}
	})
}

func TestTimersOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPolicy()
		p.IdleTimeout, p.MaxLifetime, p.Heartbeat = 0, 0, 0
		_, _, _, result, cancel := bubbleServe(t, p)
		time.Sleep(1000 * time.Hour)
		synctest.Wait()
		if r := result(); r != "" {
			t.Fatalf("ended with timers off: %q", r)
		}
		cancel()
		synctest.Wait()
		if r := result(); r != ReasonClientGone {
			t.Fatalf("reason %q", r)
		}
	})
}

// The write deadline is set per write, WriteTimeout ahead of the (fake) clock,
// and cleared after it: on HTTP/2 a deadline left behind resets the stream.
func TestWriteDeadlinePerWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := DefaultPolicy()
		p.WriteTimeout = 7 * time.Second
		p.Heartbeat = 0
		p.IdleTimeout = 0
		b, _, s, _, cancel := bubbleServe(t, p)
		defer cancel()
		synctest.Wait()
		time.Sleep(time.Hour)
		b.Publish(postEvent(t, "create", "r1", ""))
		synctest.Wait()
		s.mu.Lock()
		dl, after := s.writeDeadline, s.deadline
		s.mu.Unlock()
		if want := time.Now().Add(7 * time.Second); !dl.Equal(want) {
			t.Fatalf("deadline %v, want %v", dl, want)
		}
		if !after.IsZero() {
			t.Fatalf("deadline %v left set after the write", after)
		}
	})
}
