package handler

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"

	"go.uber.org/zap"

	"github.com/caddy-realtime/realtime/broker"
)

// subscribeRequest is the POST body; encoding/json matches field names
// case-insensitively, as PocketBase's binder does.
type subscribeRequest struct {
	ClientID      string   `json:"clientId"`
	Subscriptions []string `json:"subscriptions"`
}

// serveSubscribe replaces a client's subscriptions. The checks run in PocketBase's
// order: bind, validate, find the client, compare IPs, compare auth; then 204.
func (h *Handler) serveSubscribe(w http.ResponseWriter, r *http.Request) {
	req, status := bindSubscribe(w, r)
	if status != 0 {
		msg := msgGeneric
		if status == http.StatusRequestEntityTooLarge {
			msg = "Request entity too large."
		}
		writeError(w, status, msg, nil)
		return
	}
	policy := h.Broker.Policy()
	if data := validateSubscribe(req, policy); data != nil {
		writeError(w, http.StatusBadRequest, msgGeneric, data)
		return
	}
	c, ok := h.Broker.Client(req.ClientID)
	if !ok {
		writeError(w, http.StatusNotFound, "Missing or invalid client id.", nil)
		return
	}
	if c.IP() != "" && c.IP() != h.clientIP(r) {
		writeError(w, http.StatusBadRequest, "Invalid realtime client.", nil)
		return
	}
	var auth *broker.Auth
	if h.Authenticate != nil {
		var err error
		if auth, err = h.Authenticate(r); err != nil {
			h.logger().Warn("realtime auth lookup failed", zap.String("client", c.ID()), zap.Error(err))
			writeError(w, http.StatusServiceUnavailable,
				"The authentication service is unavailable, please try again later.", nil)
			return
		}
	}
	if err := c.ReplaceAuth(auth); err != nil {
		writeError(w, http.StatusForbidden, "The current and the previous request authorization don't match.", nil)
		return
	}
	if err := h.Broker.SetSubscriptions(c, req.Subscriptions); err != nil {
		var te *broker.TopicError
		switch {
		case errors.As(err, &te) && te.Forbidden:
			writeError(w, http.StatusForbidden, "You are not allowed to subscribe to "+strconv.Quote(te.Topic)+".", nil)
		case errors.As(err, &te):
			writeError(w, http.StatusBadRequest, msgGeneric, topicErrorData(te.Index, te.Err))
		default:
			writeError(w, http.StatusBadRequest, err.Error(), nil)
		}
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// bindSubscribe reads a JSON, urlencoded or multipart body; status is non-zero on failure.
func bindSubscribe(w http.ResponseWriter, r *http.Request) (subscribeRequest, int) {
	var req subscribeRequest
	if r.ContentLength == 0 {
		return req, 0 // PocketBase binds nothing from an empty body, whatever its type
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return req, readErrorStatus(err)
		}
		if len(body) == 0 {
			return req, 0
		}
		// One Decode, as PocketBase's binder: data after the first value is ignored.
		if err := json.NewDecoder(bytes.NewReader(body)).Decode(&req); err != nil {
			return req, http.StatusBadRequest
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		var err error
		if mediaType == "multipart/form-data" {
			err = r.ParseMultipartForm(MaxBodyBytes)
		} else {
			err = r.ParseForm()
		}
		if err != nil {
			return req, readErrorStatus(err)
		}
		req.ClientID = r.PostForm.Get("clientId")
		req.Subscriptions = r.PostForm["subscriptions"]
		if r.MultipartForm != nil {
			req.ClientID = firstOf(r.MultipartForm.Value["clientId"])
			req.Subscriptions = r.MultipartForm.Value["subscriptions"]
		}
	default:
		// PocketBase binds nothing from an empty body whatever its type, then fails validation.
		n, err := r.Body.Read(make([]byte, 1))
		if n == 0 && errors.Is(err, io.EOF) {
			return req, 0
		}
		return req, http.StatusBadRequest
	}
	return req, 0
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func readErrorStatus(err error) int {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// validateSubscribe applies PocketBase's limits (counted in bytes) plus our
// topic checks, returning PocketBase's per-field error data or nil.
func validateSubscribe(req subscribeRequest, p *broker.Policy) map[string]any {
	data := map[string]any{}
	switch {
	case req.ClientID == "":
		data["clientId"] = requiredError()
	case len(req.ClientID) > 255:
		data["clientId"] = lengthError(1, 255)
	}
	maxSubs, maxLen := p.MaxSubscriptions, p.MaxTopicLength
	if maxSubs > 0 && len(req.Subscriptions) > maxSubs {
		data["subscriptions"] = lengthError(0, maxSubs)
	} else {
		items := map[string]any{}
		for i, topic := range req.Subscriptions {
			if maxLen > 0 && len(topic) > maxLen {
				items[strconv.Itoa(i)] = lengthError(0, maxLen)
			} else if err := broker.ValidateTopic(topic, p.Wildcard); err != nil {
				items[strconv.Itoa(i)] = topicFieldError(err)
			}
		}
		if len(items) > 0 {
			data["subscriptions"] = items
		}
	}
	if len(data) == 0 {
		return nil
	}
	return data
}

func topicErrorData(index int, err error) map[string]any {
	return map[string]any{"subscriptions": map[string]any{strconv.Itoa(index): topicFieldError(err)}}
}

// topicFieldError describes our own topic checks (deliberate differences from PocketBase).
func topicFieldError(err error) fieldError {
	switch {
	case errors.Is(err, broker.ErrControlCharacter):
		return fieldError{Code: "validation_invalid_topic", Message: "Topics must not contain control characters."}
	case errors.Is(err, broker.ErrWildcardDisabled):
		return fieldError{Code: "validation_wildcard_disabled", Message: "The \"*\" topic is disabled on this server."}
	}
	return fieldError{Code: "validation_invalid_topic", Message: err.Error()}
}
