package broker

import "sync"

// Hook is a chain of handlers, PocketBase style: each handler does its work and
// calls e.Next() to run the rest of the chain (and finally the broker's own
// action); returning without calling Next stops the chain.
type Hook[T Nexter] struct {
	mu       sync.RWMutex
	handlers []func(T) error
}

// Nexter is implemented by every hook event (through the embedded HookEvent).
type Nexter interface {
	setNext(func() error)
}

// HookEvent is embedded in every hook event.
type HookEvent struct {
	next func() error
}

// Next runs the rest of the handler chain.
func (e *HookEvent) Next() error {
	if e.next == nil {
		return nil
	}
	return e.next()
}

func (e *HookEvent) setNext(f func() error) { e.next = f }

// Bind appends a handler to the chain.
func (h *Hook[T]) Bind(fn func(e T) error) {
	h.mu.Lock()
	h.handlers = append(h.handlers, fn)
	h.mu.Unlock()
}

// Len is the number of bound handlers; the hot path skips empty hooks.
func (h *Hook[T]) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.handlers)
}

// Trigger runs the chain with final as its last link.
func (h *Hook[T]) Trigger(e T, final func(T) error) error {
	h.mu.RLock()
	handlers := h.handlers
	h.mu.RUnlock()
	var run func(i int) error
	run = func(i int) error {
		if i == len(handlers) {
			e.setNext(nil)
			if final == nil {
				return nil
			}
			return final(e)
		}
		e.setNext(func() error { return run(i + 1) })
		return handlers[i](e)
	}
	return run(0)
}

// ConnectEvent is triggered when a stream opens, before PB_CONNECT is queued.
// Returning an error refuses the connection.
type ConnectEvent struct {
	HookEvent
	Client *Client
}

// SubscribeEvent is triggered when a client's subscription set is replaced.
// Handlers may change Topics; returning an error refuses the request.
type SubscribeEvent struct {
	HookEvent
	Client *Client
	Topics []string
}

// MessageSendEvent is triggered for each message queued to a client.
// Handlers may change Name or Data; returning an error skips the message.
// They run inside the fan-out, holding the topic index: they must not call
// SetSubscriptions or Disconnect (use Client.Close, or hand off to a goroutine).
type MessageSendEvent struct {
	HookEvent
	Client *Client
	Name   string
	Data   []byte
}

// DisconnectEvent is triggered after a client's stream has ended.
type DisconnectEvent struct {
	HookEvent
	Client *Client
	Reason string
}
