//go:build linux

package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Attacks of issue 9, in the order they run. Attackers come from 127.0.0.1
// (one IP); healthy subscribers from 127.0.1.x; probes of a "real user" from
// 127.0.0.2; the connection flood (127.0.2.x up) and the stalled streams
// (127.0.5.x up) from many addresses, as a botnet would.
var Attacks = []Attack{
	{ID: "none", Name: "control: no attacker at all (the ratios that noise alone gives)", Kinds: []Kind{KindOurs},
		start: func(*abuseRun) func() { return func() {} }},
	{ID: "filters", Name: "1a: guest streams x 1000 filtered topics of 80 clauses", Kinds: pbKinds, start: attackFilters},
	{ID: "refilter", Name: "1b: 1000 fresh 401-deep filters re-posted every 1.2 s", Kinds: pbKinds, start: attackRefilter},
	{ID: "huge-body", Name: "2a: 32 MB subscription POST bodies, 8 at once", Kinds: pbKinds, start: attackHugeBody},
	{ID: "trickle", Name: "2b: 31 MB bodies, then one byte every 5 s", Kinds: pbKinds, start: attackTrickle},
	{ID: "topic-bytes", Name: "3a: clients from one IP x 1000 topics of 2500 bytes", Kinds: pbKinds, start: attackTopicBytes},
	{ID: "spellings", Name: "3b: streams x 1000 spellings of posts/*", Kinds: pbKinds, start: attackSpellings},
	{ID: "stalled", Name: "4: streams that never read, 20 KB events every 20 ms", Kinds: pbKinds, start: attackStalled,
		load: func(p AbuseParams) (float64, int) { return p.StallRate, p.StallPad }},
	{ID: "auth-flood", Name: "5: subscription POSTs with random tokens, auth endpoint answering in 50 ms", Kinds: []Kind{KindOurs},
		setup: setupAuth, start: attackAuthFlood},
	{ID: "conn-flood", Name: "6: connections toward the file limit (max_clients unset)", Kinds: pbKinds, start: attackConnFlood},
}

// attackerLG is the attacker's own load generator, so its counters stay apart from the healthy side's.
func (r *abuseRun) attackerLG() (*LoadGen, error) {
	if r.alg == nil {
		lg, err := NewLoadGen(r.srv.Addr, 4)
		if err != nil {
			return nil, err
		}
		r.alg = lg
	}
	return r.alg, nil
}

// groupOutcome records what load-generator attackers got.
func (r *abuseRun) groupOutcome(prefix string, groups ...*ConnGroup) {
	for _, g := range groups {
		st := g.Stats()
		r.add(prefix+"subscribed", float64(st.Subscribed))
		r.add(prefix+"failed", float64(st.Failed))
		if pending := st.N - st.Subscribed - st.Failed; pending > 0 {
			r.add(prefix+"still_subscribing", float64(pending))
		}
		r.add(prefix+"closed_by_server", float64(st.StallDrops+sumMap(st.Drops)))
		for why, n := range st.Failures {
			for range n {
				r.saw(why)
			}
		}
		for why, n := range st.Drops {
			r.mu.Lock()
			r.seen["closed: "+why] += n
			r.mu.Unlock()
		}
	}
	if r.alg != nil {
		c := r.alg.Counters()
		r.set(prefix+"bytes", float64(c.Bytes))
		r.set(prefix+"events", float64(c.Delivered+c.Foreign))
	}
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func (r *abuseRun) closeAttackerLG() {
	if r.alg != nil {
		r.alg.Close()
		r.alg = nil
	}
}

// ---- 1a: heavy client filters ----

func attackFilters(r *abuseRun) func() {
	lg, err := r.attackerLG()
	if err != nil {
		r.note("attacker: %v", err)
		return func() {}
	}
	var groups []*ConnGroup
	for s := range r.p.FilterStreams {
		topics := make([]string, r.p.FilterTopics)
		for t := range topics {
			clauses := make([]string, r.p.FilterClauses)
			for i := range clauses {
				clauses[i] = fmt.Sprintf("title~'x%d_%d_%d'", s, t, i)
			}
			topics[t] = filterTopic(strings.Join(clauses, "||"))
		}
		spec := ConnSpec{Dialect: DialectPocketBase, Path: "/api/realtime", Topics: topics}
		groups = append(groups, lg.Connect(&spec, 1))
	}
	r.set("topic_bytes_max", float64(len(filterTopic(strings.Repeat("title~'x0_999_79'||", r.p.FilterClauses)))))
	return func() {
		r.groupOutcome("", groups...)
		r.closeAttackerLG()
	}
}

// ---- 1b: fresh deep filters re-posted ----

func attackRefilter(r *abuseRun) func() {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		st, err := openPBStream(r.srv.Addr, "127.0.0.1", 10*time.Second)
		if err != nil {
			r.saw("stream: " + shortErr(err))
			return
		}
		defer func() {
			r.set("bytes", float64(st.Bytes.Load()))
			r.set("events", float64(st.Events.Load()))
			if st.Closed() {
				r.saw("stream closed by the server")
			}
			st.Close()
		}()
		c := httpFrom("127.0.0.1", 2, 30*time.Second)
		lat := NewHistogram()
		for round := 0; !r.halted(); round++ {
			topics := make([]string, r.p.RefilterTopics)
			for t := range topics {
				d := r.p.RefilterDepth
				topics[t] = filterTopic(strings.Repeat("(", d) + fmt.Sprintf("title~'r%d_%d'", round, t) + strings.Repeat(")", d))
			}
			if round == 0 {
				r.set("topic_bytes", float64(len(topics[0])))
			}
			t0 := time.Now()
			status, body, err := postSubscribe(context.Background(), c, r.srv.Addr, subscribeBody(st.ClientID, topics), "")
			lat.Record(int64(time.Since(t0)))
			r.saw(statusKey(status, body, err))
			r.add("posts", 1)
			if !r.sleep(r.p.RefilterEvery - time.Since(t0)) {
				break
			}
		}
		r.set("post_p50_ms", ms(lat.Quantile(0.5)))
		r.set("post_max_ms", ms(lat.Max()))
	}()
	return func() { wg.Wait() }
}

// ---- 2a: huge subscription bodies ----

func hugeBody(size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, `{"subscriptions":[""`...)
	for len(b) < size-2 {
		b = append(b, `,""`...)
	}
	return append(b, "]}"...)
}

// rawPOST writes head+body on a fresh connection (the body at once, or all
// but its last tail bytes and then one byte per every) and reads the answer.
func (r *abuseRun) rawPOST(src string, body []byte, tail int, every time.Duration, counter string) {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", r.srv.Addr)
	if err != nil {
		r.saw("dial: " + shortErr(err))
		return
	}
	defer conn.Close()
	t0 := time.Now()
	answered := make(chan string, 1)
	go func() {
		conn.SetReadDeadline(time.Now().Add(r.p.AttackDur + 30*time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- "no answer: " + shortErr(err)
			return
		}
		b := make([]byte, 512)
		n, _ := resp.Body.Read(b)
		answered <- statusKey(resp.StatusCode, string(b[:n]), nil)
	}()
	head := fmt.Sprintf("POST /api/realtime HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", r.srv.Addr, len(body))
	sent := 0
	write := func(p []byte) bool {
		conn.SetWriteDeadline(time.Now().Add(20 * time.Second))
		n, err := conn.Write(p)
		sent += n
		r.add(counter, float64(n))
		if err != nil {
			r.saw("write: " + shortErr(err))
			return false
		}
		return true
	}
	ok := write([]byte(head)) && write(body[:len(body)-tail])
	for i := len(body) - tail; ok && i < len(body); i++ {
		select {
		case a := <-answered:
			r.saw(a)
			r.add("answered_before_body_end", 1)
			r.add("held_s_total", time.Since(t0).Seconds())
			return
		case <-r.stopped:
			r.add("still_open_at_end", 1)
			r.add("held_s_total", time.Since(t0).Seconds())
			return
		case <-time.After(every):
		}
		ok = write(body[i : i+1])
	}
	select {
	case a := <-answered:
		r.saw(a)
	case <-r.stopped:
		r.add("still_open_at_end", 1)
	}
	r.add("held_s_total", time.Since(t0).Seconds())
}

func attackHugeBody(r *abuseRun) func() {
	body := hugeBody(r.p.HugeBodyMB << 20)
	var wg sync.WaitGroup
	for range r.p.HugeBodyConc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !r.halted() {
				r.rawPOST("127.0.0.1", body, 0, 0, "bytes_sent")
				r.add("posts", 1)
			}
		}()
	}
	return func() { wg.Wait() }
}

// ---- 2b: trickled bodies ----

func attackTrickle(r *abuseRun) func() {
	size := (r.p.TrickleMB + 1) << 20
	body := hugeBody(size)
	tail := 1 << 20 // never all sent within a run at one byte per TrickleEvery
	var wg sync.WaitGroup
	for range r.p.TrickleConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.rawPOST("127.0.0.1", body, tail, r.p.TrickleEvery, "bytes_sent")
			r.add("posts", 1)
		}()
	}
	return func() { wg.Wait() }
}

// ---- 3a: 1000 x 2500-byte topics per client, from one IP ----

func attackTopicBytes(r *abuseRun) func() {
	lg, err := r.attackerLG()
	if err != nil {
		r.note("attacker: %v", err)
		return func() {}
	}
	topics := make([]string, r.p.MemTopics)
	for t := range topics {
		id := fmt.Sprintf("%06d", t)
		topics[t] = "posts/" + strings.Repeat("a", max(r.p.MemTopicBytes-len("posts/")-len(id), 0)) + id
	}
	spec := ConnSpec{Dialect: DialectPocketBase, Path: "/api/realtime", Topics: topics, MaxInflight: 64}
	g := lg.Connect(&spec, r.p.MemClients)
	r.set("post_bytes", float64(len(subscriptionBody("0123456789012345678901234567890123456789", topics))))
	return func() {
		r.groupOutcome("", g)
		r.closeAttackerLG()
	}
}

// ---- 3b: 1000 spellings of one topic ----

func attackSpellings(r *abuseRun) func() {
	lg, err := r.attackerLG()
	if err != nil {
		r.note("attacker: %v", err)
		return func() {}
	}
	topics := make([]string, r.p.Spellings)
	for i := range topics {
		topics[i] = "posts/*?v=" + strconv.Itoa(i)
	}
	spec := ConnSpec{Dialect: DialectPocketBase, Path: "/api/realtime", Topics: topics}
	g := lg.Connect(&spec, r.p.SpellingStreams)
	return func() {
		r.groupOutcome("", g)
		r.closeAttackerLG()
	}
}

// ---- 4: stalled streams at scale ----

func attackStalled(r *abuseRun) func() {
	lg, err := r.attackerLG()
	if err != nil {
		r.note("attacker: %v", err)
		return func() {}
	}
	spec := r.srv.Subscriber()
	spec.Stall, spec.RcvBuf = true, 4096
	for i := range max(r.p.StallIPs, 1) { // many addresses: max_clients_per_ip is not what this attack tests
		spec.SourceIPs = append(spec.SourceIPs, [4]byte{127, 0, byte(5 + i/250), byte(1 + i%250)})
	}
	g := lg.Connect(&spec, r.p.StallConns)
	port := r.srv.Port()
	t0 := time.Now()
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() { // when the first and the last stalled stream left the server; ours: all clients' pending bytes
		defer close(watched)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if r.kind == KindOurs && k%4 == 0 {
				if q, err := pendingBytes(r.srv); err == nil {
					r.mu.Lock()
					r.att["server_pending_max_mb"] = max(r.att["server_pending_max_mb"], mb(q))
					r.mu.Unlock()
				}
			}
			n := evictedCount(lg, g, port)
			r.mu.Lock()
			if _, ok := r.att["first_eviction_s"]; !ok && n > 0 {
				r.att["first_eviction_s"] = time.Since(t0).Seconds()
			}
			if _, ok := r.att["all_evicted_s"]; !ok && n >= int(g.subscribed.Load()) && n > 0 && g.subscribed.Load() >= int64(r.p.StallConns)/2 {
				r.att["all_evicted_s"] = time.Since(t0).Seconds()
			}
			r.mu.Unlock()
		}
	}()
	return func() {
		close(stop)
		<-watched
		r.set("evicted", float64(evictedCount(lg, g, port)))
		r.groupOutcome("", g)
		r.closeAttackerLG()
	}
}

// ---- 5: auth lookup amplification ----

func setupAuth(r *abuseRun) (ServerOptions, error) {
	a, err := startSlowAuth(1000, r.p.AuthDelay)
	if err != nil {
		return ServerOptions{}, err
	}
	r.auth = a
	return ServerOptions{AuthURL: a.URL, Realtime: "\t\tcollection posts {\n\t\t\tlist_rule \"\"\n\t\t\tview_rule \"\"\n\t\t}\n"}, nil
}

func attackAuthFlood(r *abuseRun) func() {
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(2)
	go func() { // the flood
		defer wg.Done()
		var ids []string
		var streams []*pbStream
		for range r.p.AuthStreams {
			st, err := openPBStream(r.srv.Addr, "127.0.0.1", 10*time.Second)
			if err != nil {
				r.saw("stream: " + shortErr(err))
				continue
			}
			streams = append(streams, st)
			ids = append(ids, st.ClientID)
		}
		defer func() {
			for _, st := range streams {
				st.Close()
			}
		}()
		if len(ids) == 0 {
			return
		}
		c := httpFrom("127.0.0.1", r.p.AuthConc, 30*time.Second)
		defer c.CloseIdleConnections()
		var next atomic.Int64
		lat := make([]*Histogram, r.p.AuthConc)
		var workers sync.WaitGroup
		t0 := time.Now()
		for w := range r.p.AuthConc {
			lat[w] = NewHistogram()
			workers.Add(1)
			go func() {
				defer workers.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(r.p.AuthPosts) || r.halted() {
						return
					}
					tok := make([]byte, 16)
					rand.Read(tok)
					body := subscribeBody(ids[int(i)%len(ids)], []string{"posts/*"})
					s0 := time.Now()
					status, b, err := postSubscribe(ctx, c, r.srv.Addr, body, hex.EncodeToString(tok))
					lat[w].Record(int64(time.Since(s0)))
					r.saw(statusKey(status, b, err))
				}
			}()
		}
		workers.Wait()
		h := NewHistogram()
		for _, l := range lat {
			h.Merge(l)
		}
		r.set("posts", float64(h.Count()))
		r.set("flood_s", time.Since(t0).Seconds())
		r.set("post_p50_ms", ms(h.Quantile(0.5)))
		r.set("post_p99_ms", ms(h.Quantile(0.99)))
	}()
	go func() { // a real user with a token never seen before, every second
		defer wg.Done()
		c := httpFrom("127.0.0.2", 1, 15*time.Second)
		defer c.CloseIdleConnections()
		worst := 0.0
		for u := 0; r.sleep(time.Second) && u < len(r.auth.Tokens); u++ {
			t0 := time.Now()
			st, err := openPBStream(r.srv.Addr, "127.0.0.2", 10*time.Second)
			if err != nil {
				r.add("real_user_failed", 1)
				r.saw("real user stream: " + shortErr(err))
				continue
			}
			status, body, err := postSubscribe(context.Background(), c, r.srv.Addr, subscribeBody(st.ClientID, []string{"posts/*"}), r.auth.Tokens[u])
			st.Close()
			d := time.Since(t0).Seconds() * 1000
			worst = max(worst, d)
			r.add("real_user_tries", 1)
			if status == 204 {
				r.add("real_user_ok", 1)
			} else {
				r.saw("real user: " + statusKey(status, body, err))
			}
		}
		r.set("real_user_worst_ms", worst)
	}()
	return func() {
		cancel()
		wg.Wait()
		r.set("upstream_lookups", float64(r.auth.Lookups.Load()))
		r.set("upstream_in_flight_max", float64(r.auth.MaxInFlight.Load()))
	}
}

// ---- 6: connection flood ----

// floodReport is what a flood child prints, one JSON line per second.
type floodReport struct {
	Subscribed, Failed, Dropped int
	Failures                    map[string]int
}

// RunFloodChild is the child process of the connection flood:
// -flood-child ADDR N FIRST_IP_INDEX. It holds N streams (GET /api/realtime,
// then an empty subscription POST, as the SDK does before its first subscribe) from addresses 127.0.(2+i/250).(1+i%250) and
// prints a floodReport every second until its stdin closes.
func RunFloodChild(args []string) error {
	if len(args) != 3 {
		return fmt.Errorf("usage: -flood-child ADDR N FIRST_IP_INDEX")
	}
	n, _ := strconv.Atoi(args[1])
	first, _ := strconv.Atoi(args[2])
	if err := RaiseFileLimit(); err != nil {
		return err
	}
	lg, err := NewLoadGen(args[0], 1)
	if err != nil {
		return err
	}
	defer lg.Close()
	spec := ConnSpec{Dialect: DialectPocketBase, Path: "/api/realtime", MaxInflight: 1000}
	for i := range 200 {
		k := first + i
		spec.SourceIPs = append(spec.SourceIPs, [4]byte{127, 0, byte(2 + k/250), byte(1 + k%250)})
	}
	g := lg.Connect(&spec, n)
	eof := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		close(eof)
	}()
	enc := json.NewEncoder(os.Stdout)
	for {
		st := g.Stats()
		enc.Encode(floodReport{Subscribed: st.Subscribed, Failed: st.Failed, Dropped: sumMap(st.Drops), Failures: st.Failures})
		select {
		case <-eof:
			return nil
		case <-time.After(time.Second):
		}
	}
}

type floodChild struct {
	cmd  *exec.Cmd
	in   interface{ Close() error }
	mu   sync.Mutex
	last floodReport
	done chan struct{}
}

func attackConnFlood(r *abuseRun) func() {
	var children []*floodChild
	per := r.p.FloodConns / max(r.p.FloodChildren, 1)
	for i := range r.p.FloodChildren {
		cmd := exec.Command(r.ab.Self, "-flood-child", r.srv.Addr, strconv.Itoa(per), strconv.Itoa(i*200))
		cmd.Stderr = os.Stderr
		in, err1 := cmd.StdinPipe()
		out, err2 := cmd.StdoutPipe()
		if err1 != nil || err2 != nil {
			r.note("flood child pipes: %v %v", err1, err2)
			continue
		}
		if err := cmd.Start(); err != nil {
			r.note("flood child: %v", err)
			continue
		}
		fc := &floodChild{cmd: cmd, in: in, done: make(chan struct{})}
		go func() {
			defer close(fc.done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var rep floodReport
				if json.Unmarshal(sc.Bytes(), &rep) == nil {
					fc.mu.Lock()
					fc.last = rep
					fc.mu.Unlock()
				}
			}
		}()
		children = append(children, fc)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the admin API (ours) or the health endpoint (PocketBase), a new connection each time
		defer wg.Done()
		url := "http://" + r.srv.Addr + "/api/health"
		if r.kind == KindOurs {
			url = "http://" + r.srv.AdminAddr + "/realtime/stats"
		}
		lat := NewHistogram()
		for r.sleep(500 * time.Millisecond) {
			c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			req, _ := http.NewRequest("GET", url, nil)
			req.Header.Set("Origin", "http://"+r.srv.AdminAddr)
			t0 := time.Now()
			resp, err := c.Do(req)
			r.add("admin_tries", 1)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					r.add("admin_ok", 1)
					lat.Record(int64(time.Since(t0)))
					continue
				}
				r.saw(fmt.Sprintf("admin: %d", resp.StatusCode))
				continue
			}
			r.saw("admin: " + shortErr(err))
		}
		r.set("admin_max_ms", ms(lat.Max()))
	}()
	go func() { // a new user connecting and subscribing, every 2 s
		defer wg.Done()
		c := httpFrom("127.0.0.2", 1, 5*time.Second)
		defer c.CloseIdleConnections()
		for r.sleep(2 * time.Second) {
			r.add("new_user_tries", 1)
			st, err := openPBStream(r.srv.Addr, "127.0.0.2", 5*time.Second)
			if err != nil {
				r.saw("new user stream: " + shortErr(err))
				continue
			}
			status, body, err := postSubscribe(context.Background(), c, r.srv.Addr, subscribeBody(st.ClientID, []string{"posts/*"}), "")
			st.Close()
			if status == 204 {
				r.add("new_user_ok", 1)
			} else {
				r.saw("new user: " + statusKey(status, body, err))
			}
		}
	}()
	return func() {
		wg.Wait()
		for _, fc := range children {
			fc.mu.Lock()
			rep := fc.last
			fc.mu.Unlock()
			r.add("flood_open", float64(rep.Subscribed))
			r.add("flood_failed", float64(rep.Failed))
			r.add("flood_closed_by_server", float64(rep.Dropped))
			r.mu.Lock()
			for why, n := range rep.Failures {
				r.seen["flood: "+why] += n
			}
			r.mu.Unlock()
			fc.in.Close()
			select {
			case <-fc.done:
			case <-time.After(10 * time.Second):
				fc.cmd.Process.Kill()
			}
			fc.cmd.Wait()
		}
	}
}

// pendingBytes sums pending_bytes over ours' clients (GET /realtime/clients, pages of 1000).
func pendingBytes(s *Server) (int64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	var sum int64
	for off := 0; ; off += 1000 {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/realtime/clients?limit=1000&offset=%d", s.AdminAddr, off), nil)
		req.Header.Set("Origin", "http://"+s.AdminAddr)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err
		}
		var page struct {
			Total   int `json:"total"`
			Clients []struct {
				Pending int64 `json:"pending_bytes"`
			} `json:"clients"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		for _, cl := range page.Clients {
			sum += cl.Pending
		}
		if len(page.Clients) == 0 || off+len(page.Clients) >= page.Total {
			return sum, nil
		}
	}
}
