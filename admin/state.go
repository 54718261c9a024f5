package admin

import (
	"encoding/json"
	"net/http"
	"unicode/utf8"

	"github.com/caddy-realtime/realtime/broker"
)

// A client's state is the free-form key/value map of broker.Client (Get/Set),
// shared with Go hooks. Values written here are stored as compacted
// json.RawMessage; values Go code stored are shown through encoding/json.
//
//	GET    /realtime/clients/{id}/state        the whole state object
//	PUT    /realtime/clients/{id}/state        merge: set every key of the body object (null is
//	                                           stored as null), keep the others; returns the state
//	DELETE /realtime/clients/{id}/state        remove every key; returns {}
//	GET    /realtime/clients/{id}/state/{key}  the value
//	PUT    /realtime/clients/{id}/state/{key}  set the key to the body (any JSON value); returns the state
//	DELETE /realtime/clients/{id}/state/{key}  remove the key (404 when absent); returns the state

// maxKeyBytes bounds a state key.
const maxKeyBytes = 255

// jsonValue is one state value ready for encoding; a value Go code stored
// that encoding/json cannot encode is shown as null rather than failing the response.
type jsonValue struct{ v any }

func (j jsonValue) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(j.v)
	if err != nil {
		return []byte("null"), nil
	}
	return b, nil
}

func state(c *broker.Client) map[string]jsonValue {
	st := c.State()
	out := make(map[string]jsonValue, len(st))
	for k, v := range st {
		out[k] = jsonValue{v}
	}
	return out
}

func checkKey(key string) error {
	if len(key) > maxKeyBytes {
		return errorf(http.StatusBadRequest, "state key is longer than %d bytes", maxKeyBytes)
	}
	if !utf8.ValidString(key) {
		return errorf(http.StatusBadRequest, "state key %q is not valid UTF-8", key)
	}
	return nil
}

func (h *Handler) getState(w http.ResponseWriter, _ *http.Request, b *broker.Broker, p params) error {
	c, err := client(b, p.client)
	if err != nil {
		return err
	}
	return writeJSON(w, state(c))
}

func (h *Handler) putState(w http.ResponseWriter, r *http.Request, b *broker.Broker, p params) error {
	c, err := client(b, p.client)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	if err := checkJSON(body, "a JSON object of state keys"); err != nil {
		return err
	}
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(body, &patch); err != nil || patch == nil {
		return errorf(http.StatusBadRequest, "state must be a JSON object of keys and values")
	}
	// validate every key before setting any, so a bad body changes nothing
	values := make(map[string]json.RawMessage, len(patch))
	for k, raw := range patch {
		if k == "" {
			return errorf(http.StatusBadRequest, "state keys must not be empty")
		}
		if err := checkKey(k); err != nil {
			return err
		}
		v, err := compact(raw)
		if err != nil {
			return errorf(http.StatusBadRequest, "state key %q: %s", k, jsonErrorText(err))
		}
		values[k] = v
	}
	for k, v := range values {
		c.Set(k, v)
	}
	return writeJSON(w, state(c))
}

func (h *Handler) deleteState(w http.ResponseWriter, _ *http.Request, b *broker.Broker, p params) error {
	c, err := client(b, p.client)
	if err != nil {
		return err
	}
	for k := range c.State() {
		c.Unset(k)
	}
	return writeJSON(w, state(c))
}

func (h *Handler) getStateKey(w http.ResponseWriter, _ *http.Request, b *broker.Broker, p params) error {
	c, err := client(b, p.client)
	if err != nil {
		return err
	}
	v, ok := c.Get(p.key)
	if !ok {
		return errorf(http.StatusNotFound, "unknown state key %q for client %q", p.key, p.client)
	}
	return writeJSON(w, jsonValue{v})
}

func (h *Handler) putStateKey(w http.ResponseWriter, r *http.Request, b *broker.Broker, p params) error {
	c, err := client(b, p.client)
	if err != nil {
		return err
	}
	if err := checkKey(p.key); err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	if err := checkJSON(body, "a JSON value"); err != nil {
		return err
	}
	v, err := compact(body)
	if err != nil {
		return errorf(http.StatusBadRequest, "malformed JSON: %s", jsonErrorText(err))
	}
	c.Set(p.key, v)
	return writeJSON(w, state(c))
}

func (h *Handler) deleteStateKey(w http.ResponseWriter, _ *http.Request, b *broker.Broker, p params) error {
	c, err := client(b, p.client)
	if err != nil {
		return err
	}
	if _, ok := c.Get(p.key); !ok {
		return errorf(http.StatusNotFound, "unknown state key %q for client %q", p.key, p.client)
	}
	c.Unset(p.key)
	return writeJSON(w, state(c))
}
