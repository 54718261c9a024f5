package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/caddy-realtime/realtime/broker"
)

// postEvents publishes one event or an array of them: POST /realtime/events.
// The whole batch is validated before anything is published.
func (h *Handler) postEvents(w http.ResponseWriter, r *http.Request, b *broker.Broker, _ params) error {
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	events, err := broker.DecodeEvents(body)
	if err != nil {
		return Error{Code: http.StatusBadRequest, Err: err}
	}
	// DecodeEvents reads a single object with a json.Decoder, which stops
	// after the object: make sure nothing (not even a stray '}') follows it.
	if err := checkJSON(body, "an event object or an array of events"); err != nil {
		return err
	}
	if err := b.CheckEvents(events); err != nil {
		var ee *broker.EventError
		if errors.As(err, &ee) && bytes.TrimSpace(body)[0] == '{' {
			err = ee.Err // a single event: no index, as DecodeEvents
		}
		return Error{Code: http.StatusBadRequest, Err: err}
	}
	n, err := b.PublishContext(r.Context(), events)
	if err != nil {
		return unavailable(err)
	}
	return writeJSON(w, struct {
		Published int `json:"published"`
	}{n})
}

// messageRequest is the body of POST /realtime/messages.
type messageRequest struct {
	Name    string          `json:"name"`
	Data    json.RawMessage `json:"data"`
	Clients json.RawMessage `json:"clients"`
}

// postMessage sends a custom message to the subscribers of exactly name, or
// only to the listed clients among them: POST /realtime/messages.
// An explicit empty "clients" list reaches nobody; omit it (or send null) for everyone.
func (h *Handler) postMessage(w http.ResponseWriter, r *http.Request, b *broker.Broker, _ params) error {
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	var req messageRequest
	if err := decodeObject(body, &req); err != nil {
		return err
	}
	m := &broker.Message{Name: req.Name, Data: req.Data}
	var only *[]string
	if len(req.Clients) > 0 && string(req.Clients) != "null" {
		var ids []string
		if err := json.Unmarshal(req.Clients, &ids); err != nil {
			return errorf(http.StatusBadRequest, "clients must be an array of client id strings")
		}
		only = &ids
		m.Clients = ids
	}
	if err := m.Validate(); err != nil {
		return Error{Code: http.StatusBadRequest, Err: err}
	}
	delivered := 0
	if only == nil || len(*only) > 0 {
		if delivered, err = b.SendMessageContext(r.Context(), m); err != nil {
			return unavailable(err)
		}
	}
	return writeJSON(w, struct {
		Delivered int `json:"delivered"`
	}{delivered})
}

// unavailable answers a publish the transport could not take (NATS down, no
// acknowledgement): 503, and nothing was published.
func unavailable(err error) error {
	if errors.Is(err, broker.ErrBatchTooLarge) {
		return Error{Code: http.StatusBadRequest, Err: err}
	}
	return Error{Code: http.StatusServiceUnavailable, Err: fmt.Errorf("not published: %w", err)}
}
