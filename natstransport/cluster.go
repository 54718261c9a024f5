package natstransport

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/caddy-realtime/realtime/broker"
)

// A node reaches the node holding a client with a request on
// rpcPrefix.<stream>.<clientId>: every node listens on the stream's
// wildcard, and only the one holding the client answers. Sessions live in a
// JetStream key-value bucket whose entries expire after the resume window.

const rpcPrefix = "realtime_rpc."

// forwardTimeout bounds how long a node waits for the holder of a client; no
// answer by then means no node holds it.
const forwardTimeout = time.Second

func (t *Transport) rpcSubject(clientID string) string {
	return rpcPrefix + t.cfg.Stream + "." + clientID
}

// HandleForwarded sets what answers requests about this node's clients; set it before Start.
func (t *Transport) HandleForwarded(fn func(clientID string, req []byte) ([]byte, bool)) {
	t.forwarded = fn
}

func (t *Transport) listen() error {
	_, err := t.nc.Subscribe(t.rpcSubject("*"), func(m *nats.Msg) {
		fn := t.forwarded
		if fn == nil || m.Reply == "" {
			return
		}
		id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		go func() {
			if resp, held := fn(id, m.Data); held {
				_ = m.Respond(resp)
			}
		}()
	})
	return err
}

// Forward asks the node holding clientID; held is false when none answers.
func (t *Transport) Forward(ctx context.Context, clientID string, req []byte) ([]byte, bool, error) {
	if t.nc == nil || !t.nc.IsConnected() {
		return nil, false, ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	resp, err := t.nc.RequestWithContext(ctx, t.rpcSubject(clientID), req)
	switch {
	case err == nil:
		return resp.Data, true, nil
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return nil, false, nil
	default:
		return nil, false, err
	}
}

func (t *Transport) sessionBucket() string { return t.cfg.Stream + "_sessions" }

// openSessions creates or opens the session bucket (called when consuming starts).
func (t *Transport) openSessions(ctx context.Context) error {
	ttl := t.cfg.Window
	if ttl <= 0 {
		return nil
	}
	kv, err := t.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: t.sessionBucket(), TTL: broker.SessionTTL(ttl), Replicas: t.cfg.Replicas, Storage: t.storage(),
	})
	if err != nil {
		return err
	}
	t.kv.Store(&kv)
	return nil
}

// retrySessions keeps trying to open the session bucket until it is open:
// creating it can outlast consume's deadline (three nodes creating one R3
// bucket at once on a cluster just formed), and the consumer may then run
// for hours without another attempt.
func (t *Transport) retrySessions() {
	if !t.kvRetrying.CompareAndSwap(false, true) {
		return
	}
	defer t.kvRetrying.Store(false)
	for t.sessions() == nil {
		select {
		case <-t.ctx.Done():
			return
		case <-time.After(time.Second):
		}
		ctx, cancel := context.WithTimeout(t.ctx, 10*time.Second)
		err := t.openSessions(ctx)
		cancel()
		if err == nil {
			t.cfg.Logger.Info("the session bucket is open: clients resume on any node", zap.String("bucket", t.sessionBucket()))
		}
	}
}

func (t *Transport) sessions() jetstream.KeyValue {
	if p := t.kv.Load(); p != nil {
		return *p
	}
	return nil
}

type sessionOp struct {
	id  string
	val []byte // nil: delete
}

// SaveSession stores a session in the background (in order per node).
func (t *Transport) SaveSession(clientID string, s []byte) { t.queueSession(sessionOp{clientID, s}) }

// DeleteSession forgets a session in the background.
func (t *Transport) DeleteSession(clientID string) { t.queueSession(sessionOp{id: clientID}) }

func (t *Transport) queueSession(op sessionOp) {
	select {
	case t.sessionOps <- op:
	default:
		t.cfg.Logger.Warn("session store busy: a session was not shared (its client resumes only on this node)",
			zap.String("client", op.id))
	}
}

// writeSessions applies queued session changes one at a time.
func (t *Transport) writeSessions() {
	for {
		select {
		case <-t.ctx.Done():
			return
		case op := <-t.sessionOps:
			kv := t.sessions()
			if kv == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(t.ctx, 2*time.Second)
			var err error
			if op.val == nil {
				err = kv.Purge(ctx, op.id)
			} else {
				_, err = kv.Put(ctx, op.id, op.val)
			}
			cancel()
			if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				t.cfg.Logger.Debug("writing a session", zap.String("client", op.id), zap.Error(err))
			}
		}
	}
}

// TakeSession reads and removes a session another node stored.
func (t *Transport) TakeSession(ctx context.Context, clientID string) ([]byte, bool) {
	kv := t.sessions()
	if kv == nil || !t.nc.IsConnected() {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	e, err := kv.Get(ctx, clientID)
	if err != nil {
		return nil, false
	}
	// Only the node whose delete wins resumes it.
	if err := kv.Delete(ctx, clientID, jetstream.LastRevision(e.Revision())); err != nil {
		return nil, false
	}
	return e.Value(), true
}

var _ broker.Cluster = (*Transport)(nil)

// HandleGather sets what answers gathered requests; set it before Start.
func (t *Transport) HandleGather(fn func(req []byte) []byte) { t.gathered = fn }

func (t *Transport) gatherSubject() string { return rpcPrefix + t.cfg.Stream + "._nodes" }

func (t *Transport) listenGather() error {
	_, err := t.nc.Subscribe(t.gatherSubject(), func(m *nats.Msg) {
		fn := t.gathered
		if fn == nil || m.Reply == "" {
			return
		}
		go func() {
			if resp := fn(m.Data); resp != nil {
				_ = m.Respond(resp)
			}
		}()
	})
	return err
}

// gatherWait is how long Gather collects answers.
const gatherWait = 300 * time.Millisecond

// Gather publishes req to every node and collects the answers for gatherWait.
func (t *Transport) Gather(ctx context.Context, req []byte) [][]byte {
	if t.nc == nil || !t.nc.IsConnected() {
		return nil
	}
	inbox := t.nc.NewRespInbox()
	sub, err := t.nc.SubscribeSync(inbox)
	if err != nil {
		return nil
	}
	defer sub.Unsubscribe()
	if err := t.nc.PublishRequest(t.gatherSubject(), inbox, req); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, gatherWait)
	defer cancel()
	var out [][]byte
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return out
		}
		out = append(out, m.Data)
	}
}

// CatchUp waits (until ctx ends) for this node to know the stream's epoch,
// to have consumed position when epoch is the stream's, and to have the
// session bucket open: a node that just (re)started can then resume a client
// whose node died instead of telling it to start over.
func (t *Transport) CatchUp(ctx context.Context, epoch string, position uint64) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		mine := t.Epoch()
		if mine != "" && (mine != epoch || t.log.Last() >= position) && (t.cfg.Window <= 0 || t.sessions() != nil) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
