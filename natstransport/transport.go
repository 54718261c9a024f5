// Package natstransport carries a broker's events on a NATS JetStream stream,
// so several Caddy nodes share one order: a publish on any node is appended to
// the stream (all or none, acknowledged), every node consumes the stream in
// order and fans out to its own clients, and the stream sequence is the
// position in frame ids, valid on every node. It is plain Go (no Caddy).
package natstransport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.uber.org/zap"

	"github.com/caddy-realtime/realtime/broker"
)

// Config says where the stream is and what it keeps.
type Config struct {
	// URLs of NATS servers (nats://host:port).
	URLs []string
	// Stream is the JetStream stream's name; its subjects are Stream + ".>".
	Stream string
	// Replicas of the stream (1 or, in a cluster, 3 or 5). Default: 1.
	Replicas int
	// Memory keeps the stream in memory instead of files.
	Memory bool
	// MaxBytes caps the stream; the oldest records go first. 0 = no cap.
	MaxBytes int64
	// Window is how long the stream (and each node's replay log) keeps
	// records for resuming clients: the stream's max age. 0 = resume off
	// (the stream then keeps a minute, for publishes in flight).
	Window time.Duration
	// LogBytes caps each node's replay log in memory. 0 = no cap.
	LogBytes int64
	// Options carry credentials, TLS and the like to nats.Connect.
	Options []nats.Option
	// Name of this node, shown to NATS and in the cluster's client lists.
	Name   string
	Logger *zap.Logger
}

// Transport is a broker.Transport on a JetStream stream.
type Transport struct {
	cfg     Config
	subject string
	log     *broker.ReplayLog
	epoch   atomic.Pointer[string]
	ready   atomic.Bool   // connected and consuming
	joined  atomic.Uint64 // the stream's last position when this node (re)joined its epoch
	skipped atomic.Uint64 // records that did not decode

	nc *nats.Conn
	js jetstream.JetStream

	deliver func(*broker.Record)
	from    broker.Position // delivered before Start: continue after it in its epoch
	// pending maps the message id of each record this node is publishing to
	// the record, so its delivery hands the same record back (a custom
	// message's delivered count, no decoding).
	pending sync.Map

	forwarded  func(clientID string, req []byte) ([]byte, bool)
	gathered   func(req []byte) []byte
	kv         atomic.Pointer[jetstream.KeyValue]
	kvRetrying atomic.Bool
	sessionOps chan sessionOp

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// ErrUnavailable says the stream cannot take a publish now.
var ErrUnavailable = errors.New("the NATS JetStream stream is unavailable")

// New returns a transport; nothing connects before Start.
func New(cfg Config) *Transport {
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	t := &Transport{cfg: cfg, subject: cfg.Stream, log: broker.NewReplayLog(cfg.Window, cfg.LogBytes), done: make(chan struct{})}
	none := ""
	t.epoch.Store(&none)
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.sessionOps = make(chan sessionOp, 4096)
	return t
}

// Conn is the NATS connection (nil before Start), for the cluster's requests.
func (t *Transport) Conn() *nats.Conn { return t.nc }

// JetStream is the JetStream context (nil before Start).
func (t *Transport) JetStream() jetstream.JetStream { return t.js }

// Start connects (in the background when NATS is down) and consumes the
// stream into deliver.
func (t *Transport) Start(deliver func(*broker.Record), from broker.Position) error {
	t.deliver, t.from = deliver, from
	opts := append([]nats.Option{
		nats.Name(t.cfg.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			t.cfg.Logger.Warn("NATS disconnected; open streams keep running, publishes get 503 until it returns", zap.Error(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			t.cfg.Logger.Info("NATS reconnected", zap.String("url", nc.ConnectedUrlRedacted()))
		}),
	}, t.cfg.Options...)
	nc, err := nats.Connect(strings.Join(t.cfg.URLs, ","), opts...)
	if err != nil {
		return fmt.Errorf("connecting to NATS: %w", err)
	}
	if !nc.IsConnected() {
		t.cfg.Logger.Warn("NATS is unreachable; starting anyway and retrying in the background",
			zap.Strings("urls", t.cfg.URLs))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("JetStream: %w", err)
	}
	t.nc, t.js = nc, js
	if err := errors.Join(t.listen(), t.listenGather()); err != nil {
		nc.Close()
		return fmt.Errorf("NATS subscription: %w", err)
	}
	go t.run()
	go t.writeSessions()
	return nil
}

// Epoch names the stream's order: its name and creation time, so a stream
// that was lost and created again is a new epoch.
func (t *Transport) Epoch() string { return *t.epoch.Load() }

// Last is the position of the last record consumed here (or, while this node
// catches up with the stream, the position it joined at: a client connecting
// now is owed nothing older).
func (t *Transport) Last() uint64 { return max(t.log.Last(), t.joined.Load()) }

// ReadFrom serves a resuming client from this node's replay log, which holds
// the stream's last window from the moment the node caught up with it.
func (t *Transport) ReadFrom(epoch string, position uint64, fn func(*broker.Record) bool) bool {
	return epoch != "" && epoch == t.Epoch() && t.log.ReadFrom(position, fn)
}

// SetLimits changes what the replay log keeps; the stream's max age follows
// at the next (re)connection.
func (t *Transport) SetLimits(window time.Duration, maxBytes int64) {
	t.log.SetLimits(window, maxBytes)
}

// Close stops consuming and closes the connection.
func (t *Transport) Close() error {
	t.cancel()
	if t.nc != nil {
		<-t.done
		t.nc.Close()
	}
	return nil
}

// Skipped counts the records this node could not read (logged and skipped).
func (t *Transport) Skipped() uint64 { return t.skipped.Load() }

// Ready says whether the transport is connected and consuming.
func (t *Transport) Ready() bool { return t.ready.Load() && t.nc != nil && t.nc.IsConnected() }

func (t *Transport) streamConfig() jetstream.StreamConfig {
	age := t.cfg.Window
	if age <= 0 {
		age = time.Minute
	}
	dup := 2 * time.Minute
	if dup > age {
		dup = age
	}
	maxBytes := t.cfg.MaxBytes
	if maxBytes <= 0 {
		maxBytes = -1
	}
	return jetstream.StreamConfig{
		Name:               t.cfg.Stream,
		Subjects:           []string{t.subject + ".>"},
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardOld,
		MaxAge:             age,
		MaxBytes:           maxBytes,
		Storage:            t.storage(),
		Replicas:           t.cfg.Replicas,
		Duplicates:         dup,
		AllowAtomicPublish: true,
	}
}

func (t *Transport) storage() jetstream.StorageType {
	if t.cfg.Memory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// run keeps the stream consumed: (re)creates the stream when missing, starts
// an ordered consumer after what was delivered, and starts over after errors.
func (t *Transport) run() {
	defer close(t.done)
	backoff := 250 * time.Millisecond
	for t.ctx.Err() == nil {
		err := t.consume()
		t.ready.Store(false)
		if t.ctx.Err() != nil {
			return
		}
		t.cfg.Logger.Warn("NATS JetStream consumer stopped; retrying", zap.String("stream", t.cfg.Stream), zap.Error(err))
		select {
		case <-t.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func (t *Transport) consume() error {
	ctx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
	defer cancel()
	stream, err := t.js.CreateOrUpdateStream(ctx, t.streamConfig())
	if err != nil {
		return fmt.Errorf("stream %q: %w", t.cfg.Stream, err)
	}
	if t.sessions() == nil {
		if err := t.openSessions(ctx); err != nil {
			t.cfg.Logger.Warn("the session bucket is unavailable: clients resume only on the node they left; retrying", zap.Error(err))
			go t.retrySessions()
		}
	}
	info := stream.CachedInfo()
	epoch := broker.EpochOf(t.cfg.Stream + "\x00" + info.Created.UTC().Format(time.RFC3339Nano))
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{t.subject + ".>"}}
	// Records up to backfill are logged for resuming clients but not fanned
	// out: they were published before this node (re)joined the order.
	var backfill uint64
	if epoch == t.Epoch() && t.Last() > 0 {
		// The same order, rejoined (NATS came back): continue exactly after
		// what this node consumed, still without fanning out what came
		// before it first joined. (Starting over here would skip, unseen,
		// everything published since the first join.)
		backfill = t.joined.Load()
		start := backfill + 1
		if l := t.log.Last(); l > 0 {
			start = l + 1
		}
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	} else {
		if t.Epoch() != "" {
			t.cfg.Logger.Warn("the NATS stream is new (lost or recreated): a new epoch, so resuming clients start over",
				zap.String("stream", t.cfg.Stream), zap.String("epoch", epoch))
		}
		backfill = info.State.LastSeq
		if t.from.Epoch == epoch && t.from.Position < backfill {
			backfill = t.from.Position // a reload's new transport: deliver what the old one did not
		}
		t.log.Reset(info.State.FirstSeq - 1)
		if t.cfg.Window > 0 && backfill > 0 {
			start := time.Now().Add(-t.cfg.Window)
			cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
			cfg.OptStartTime = &start
		} else {
			// By sequence, not "new": a record published between reading
			// the stream's state and creating the consumer is still delivered.
			cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
			cfg.OptStartSeq = backfill + 1
			t.log.Reset(backfill)
		}
		t.joined.Store(backfill)
		t.epoch.Store(&epoch)
	}
	cons, err := t.js.OrderedConsumer(t.ctx, t.cfg.Stream, cfg)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	stop := context.AfterFunc(t.ctx, it.Stop)
	defer stop()
	defer it.Stop()
	watching := make(chan struct{})
	defer close(watching)
	go t.watch(stream, info.Created, it, watching)
	t.ready.Store(true)
	t.cfg.Logger.Info("consuming the NATS JetStream stream", zap.String("stream", t.cfg.Stream),
		zap.String("epoch", epoch), zap.Uint64("from", cfg.OptStartSeq), zap.Uint64("backfill_to", backfill))
	for {
		msg, err := it.Next()
		if err != nil {
			return err
		}
		meta, err := msg.Metadata()
		if err != nil {
			continue
		}
		r, err := t.record(msg)
		if err != nil {
			t.cfg.Logger.Error("skipping a record the stream holds but this node cannot read",
				zap.Uint64("position", meta.Sequence.Stream), zap.Error(err))
			r = &broker.Record{Message: &broker.Message{}} // keeps the positions contiguous; delivers nothing
			t.skipped.Add(1)
		}
		r.Position, r.Time = meta.Sequence.Stream, meta.Timestamp
		if last := t.log.Last(); r.Position <= last {
			continue // already delivered before a reconnection
		}
		t.log.Append(r)
		if r.Position > backfill {
			t.deliver(r)
		}
	}
}

// watch stops it when the stream goes away or is created again (a new
// epoch), which the ordered consumer would not notice by itself.
func (t *Transport) watch(stream jetstream.Stream, created time.Time, it jetstream.MessagesContext, done <-chan struct{}) {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if !t.nc.IsConnected() {
			continue
		}
		ctx, cancel := context.WithTimeout(t.ctx, 2*time.Second)
		info, err := stream.Info(ctx)
		cancel()
		if errors.Is(err, jetstream.ErrStreamNotFound) || err == nil && !info.Created.Equal(created) {
			it.Stop()
			return
		}
	}
}

// envelope is a record on the stream.
type envelope struct {
	Event   json.RawMessage `json:"event,omitempty"`
	Message *wireMessage    `json:"message,omitempty"`
}

type wireMessage struct {
	Name    string          `json:"name"`
	Data    json.RawMessage `json:"data"`
	Clients []string        `json:"clients,omitempty"`
}

func (t *Transport) record(msg jetstream.Msg) (*broker.Record, error) {
	if id := msg.Headers().Get(jetstream.MsgIDHeader); id != "" {
		if r, ok := t.pending.LoadAndDelete(id); ok {
			return &broker.Record{Event: r.(*broker.Record).Event, Message: r.(*broker.Record).Message}, nil
		}
	}
	var env envelope
	if err := json.Unmarshal(msg.Data(), &env); err != nil {
		return nil, err
	}
	switch {
	case env.Event != nil:
		ev, err := broker.DecodeEvent(env.Event)
		if err != nil {
			return nil, err
		}
		return &broker.Record{Event: ev}, nil
	case env.Message != nil:
		return &broker.Record{Message: &broker.Message{Name: env.Message.Name, Data: env.Message.Data, Clients: env.Message.Clients}}, nil
	}
	return nil, errors.New("neither an event nor a message")
}

func encode(r *broker.Record) ([]byte, error) {
	var env envelope
	if r.Event != nil {
		raw, err := r.Event.MarshalWire()
		if err != nil {
			return nil, err
		}
		env.Event = raw
	} else {
		m := r.Message
		env.Message = &wireMessage{Name: m.Name, Data: m.Data, Clients: m.Clients}
	}
	return json.Marshal(&env)
}

// maxBatch is JetStream's default limit on an atomic batch.
const maxBatch = 1000

// ErrBatchTooLarge refuses a batch JetStream cannot publish atomically.
var ErrBatchTooLarge = fmt.Errorf("%w: more than %d events in one request cannot be published atomically on NATS JetStream; split the batch", broker.ErrBatchTooLarge, maxBatch)

// Publish appends recs to the stream, all or none: one record with a plain
// acknowledged publish, several as one JetStream atomic batch. An event's id
// becomes its Nats-Msg-Id, deduplicated by the stream (across nodes) for two
// minutes.
func (t *Transport) Publish(ctx context.Context, recs []*broker.Record) (uint64, int, error) {
	if len(recs) == 0 {
		return 0, 0, nil
	}
	if len(recs) > maxBatch {
		return 0, 0, ErrBatchTooLarge
	}
	// Not consuming yet: a record stored now could fall into the backfill of
	// the join to come, never delivered here, and the publish waiting for its
	// local delivery would hang.
	if t.nc == nil || !t.nc.IsConnected() || !t.ready.Load() {
		return 0, 0, ErrUnavailable
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	msgs := make([]*nats.Msg, len(recs))
	ids := make([]string, len(recs))
	for i, r := range recs {
		data, err := encode(r)
		if err != nil {
			return 0, 0, err
		}
		id := nuid.Next()
		if r.Event != nil && r.Event.ID != "" {
			id = r.Event.ID
		}
		kind := ".message"
		if r.Event != nil {
			kind = ".event"
		}
		m := nats.NewMsg(t.subject + kind)
		m.Data = data
		m.Header.Set(jetstream.MsgIDHeader, id)
		msgs[i], ids[i] = m, id
	}
	forget := func(from int) {
		for _, id := range ids[from:] {
			t.pending.Delete(id)
		}
	}
	for i, id := range ids {
		t.pending.Store(id, recs[i])
	}
	if len(msgs) == 1 {
		ack, err := t.js.PublishMsg(ctx, msgs[0])
		if err != nil {
			forget(0)
			return 0, 0, unavailable(err)
		}
		if ack.Duplicate {
			forget(0)
			return 0, 0, nil
		}
		return ack.Sequence, 1, nil
	}
	last, err := t.publishBatch(ctx, msgs)
	if err == nil {
		return last, len(msgs), nil
	}
	forget(0)
	if !errors.Is(err, errBatchDuplicate) {
		return 0, 0, unavailable(err)
	}
	// Some events were published before (a retried request): publish one by
	// one, each deduplicated by its id, so the new ones get in once.
	published := 0
	for i, m := range msgs {
		for _, h := range []string{"Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit"} {
			m.Header.Del(h)
		}
		t.pending.Store(ids[i], recs[i])
		ack, err := t.js.PublishMsg(ctx, m)
		if err != nil {
			forget(i)
			return last, published, fmt.Errorf("published %d of %d events (the others were seen before) before: %w; "+
				"retrying with the same ids publishes the rest once", published, len(msgs), unavailable(err))
		}
		if ack.Duplicate {
			t.pending.Delete(ids[i])
			continue
		}
		last = ack.Sequence
		published++
	}
	return last, published, nil
}

func unavailable(err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

var errBatchDuplicate = errors.New("the batch holds an event id published before")

// batchAck is JetStream's answer to an atomic batch's commit.
type batchAck struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	Batch  string `json:"batch"`
	Count  uint64 `json:"count"`
	Error  *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// errCodeBatchDuplicate is JSAtomicPublishContainsDuplicateMessageErr.
const errCodeBatchDuplicate = 10201

// publishBatch sends msgs as one atomic batch (ADR-50: Nats-Batch-Id and
// Nats-Batch-Sequence on each, Nats-Batch-Commit on the last, whose reply is
// the batch's acknowledgement): the stream stores all of them or none.
func (t *Transport) publishBatch(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	batch := nuid.Next()
	for i, m := range msgs {
		m.Header.Set("Nats-Batch-Id", batch)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
		if i < len(msgs)-1 {
			if err := t.nc.PublishMsg(m); err != nil {
				return 0, err
			}
		}
	}
	commit := msgs[len(msgs)-1]
	commit.Header.Set("Nats-Batch-Commit", "1")
	resp, err := t.nc.RequestMsgWithContext(ctx, commit)
	if err != nil {
		return 0, err
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("reading the batch acknowledgement: %w", err)
	}
	if ack.Error != nil {
		if ack.Error.ErrCode == errCodeBatchDuplicate {
			return 0, errBatchDuplicate
		}
		return 0, fmt.Errorf("JetStream refused the batch: %s (%d)", ack.Error.Description, ack.Error.ErrCode)
	}
	if ack.Count != uint64(len(msgs)) {
		return 0, fmt.Errorf("JetStream stored %d of a batch of %d", ack.Count, len(msgs))
	}
	return ack.Seq, nil
}

var _ broker.Transport = (*Transport)(nil)
