package handler

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/caddy-realtime/realtime/forward"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-realtime/realtime/broker"
	"github.com/caddy-realtime/realtime/rules"
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
	policy := h.Broker.Policy()
	rc := http.NewResponseController(w)
	if h.BodyTimeout > 0 {
		_ = rc.SetReadDeadline(time.Now().Add(h.BodyTimeout))
	}

	req, status, truncated := bindSubscribe(w, r, policy)
	if truncated {
		// Decoding stopped at the limit: answer at once, as net/http would
		// otherwise read on (up to 256 KiB) from a sender that may never finish.
		_ = rc.EnableFullDuplex()
	}
	if status != 0 {
		msg := msgGeneric
		switch status {
		case http.StatusRequestEntityTooLarge:
			msg = "Request entity too large."
		case http.StatusRequestTimeout:
			msg = "The request body was not received in time."
		}
		writeError(w, status, msg, nil)
		return
	}
	// Budgets before anything costly (compiling filters); past
	// max_subscriptions, PocketBase's own "too long" error comes first.
	if policy.MaxSubscriptions <= 0 || len(req.Subscriptions) <= policy.MaxSubscriptions {
		if err := h.Broker.CheckSubscriptionBudgets(h.clientIP(r), req.Subscriptions); err != nil {
			writeBudgetError(w, err)
			return
		}
	}
	data, opts := validateSubscribe(req, policy)
	if data != nil {
		writeError(w, http.StatusBadRequest, msgGeneric, data)
		return
	}
	c, ok := h.Broker.Client(req.ClientID)
	if !ok {
		if h.forward(w, r, req) {
			return
		}
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
			// Refusals by the lookup limit say when to retry; the authenticator
			// logs those itself, a line per 10s rather than one per request.
			if !setRetryAfter(w, err) {
				h.logger().Warn("realtime auth lookup failed", zap.String("client", c.ID()), zap.Error(err))
			}
			writeError(w, http.StatusServiceUnavailable,
				"The authentication service is unavailable, please try again later.", nil)
			return
		}
	}
	if err := c.ReplaceAuth(auth); err != nil {
		writeError(w, http.StatusForbidden, "The current and the previous request authorization don't match.", nil)
		return
	}
	if auth == nil || !auth.Superuser {
		// PocketBase v0.40.4 accepts a non-superuser's filter containing
		// "@request." or "@collection." (anywhere, even in a string, or in
		// sort when a filter is set) with 204 and then never sends that
		// subscription an event (observed); we refuse it with the message
		// PocketBase's list API gives for the same filter.
		for _, o := range opts {
			if field := o.SuperuserOnly(); field != "" {
				writeError(w, http.StatusForbidden, "Only superusers can filter by "+field, nil)
				return
			}
		}
	}
	if err := h.Broker.SetSubscriptions(c, req.Subscriptions); err != nil {
		var te *broker.TopicError
		var be *broker.BudgetError
		switch {
		case errors.As(err, &be):
			writeBudgetError(w, be)
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

func writeBudgetError(w http.ResponseWriter, err error) {
	var be *broker.BudgetError
	if !errors.As(err, &be) {
		writeError(w, http.StatusBadRequest, err.Error(), nil)
		return
	}
	writeError(w, http.StatusBadRequest, msgGeneric, map[string]any{
		"subscriptions": fieldError{Code: "validation_" + be.Budget, Message: be.Msg},
	})
}

// bindSubscribe reads a JSON, urlencoded or multipart body; status is non-zero on failure.
// The body is limited to what the policy's limits allow (bodyLimit), and JSON
// is decoded as a stream that stops (truncated) once the subscriptions pass
// max_subscriptions or their distinct bytes pass max_subscription_bytes.
func bindSubscribe(w http.ResponseWriter, r *http.Request, p *broker.Policy) (req subscribeRequest, status int, truncated bool) {
	if r.ContentLength == 0 {
		return req, 0, false // PocketBase binds nothing from an empty body, whatever its type
	}
	limit := bodyLimit(p)
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mediaType {
	case "application/json":
		body := &countingReader{r: r.Body}
		var err error
		if truncated, err = decodeSubscribe(body, &req, p.MaxSubscriptions, p.MaxSubscriptionBytes); err != nil {
			if body.n == 0 && errors.Is(err, io.EOF) {
				return subscribeRequest{}, 0, false // an empty body binds nothing
			}
			return req, readErrorStatus(err), false
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		var err error
		if mediaType == "multipart/form-data" {
			err = r.ParseMultipartForm(limit)
		} else {
			err = r.ParseForm()
		}
		if err != nil {
			return req, readErrorStatus(err), false
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
			return req, 0, false
		}
		return req, http.StatusBadRequest, false
	}
	return req, 0, truncated
}

func firstOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func readErrorStatus(err error) int {
	var tooBig *http.MaxBytesError
	var timeout interface{ Timeout() bool }
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &timeout) && timeout.Timeout():
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

// decodeSubscribe binds {"clientId":...,"subscriptions":[...]} from a stream,
// as PocketBase's binder would (field names case-insensitive, other fields
// ignored, data after the object ignored), but stops reading (truncated)
// once the subscriptions pass maxSubs or their distinct topics pass maxBytes
// (0 = no limit): the request is refused without the rest of the body ever
// being read or held in memory.
func decodeSubscribe(body io.Reader, req *subscribeRequest, maxSubs, maxBytes int) (truncated bool, err error) {
	dec := json.NewDecoder(body)
	tok, err := dec.Token()
	if err != nil {
		return false, err
	}
	if tok == nil {
		return false, nil // null binds nothing
	}
	if tok != json.Delim('{') {
		return false, errors.New("the body is not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false, err
		}
		key, _ := tok.(string)
		switch {
		case strings.EqualFold(key, "clientId"):
			if err := dec.Decode(&req.ClientID); err != nil {
				return false, err
			}
		case strings.EqualFold(key, "subscriptions"):
			if req.Subscriptions, truncated, err = decodeTopics(dec, maxSubs, maxBytes); err != nil || truncated {
				return truncated, err // enough to refuse: the rest is never read
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return false, err
			}
		}
	}
	_, err = dec.Token() // the closing brace
	return false, err
}

// decodeTopics reads a JSON array of strings (or null), stopping past maxSubs
// topics or maxBytes of distinct topics.
func decodeTopics(dec *json.Decoder, maxSubs, maxBytes int) (topics []string, truncated bool, err error) {
	tok, err := dec.Token()
	if err != nil || tok == nil {
		return nil, false, err
	}
	if tok != json.Delim('[') {
		return nil, false, errors.New("subscriptions is not an array")
	}
	var seen map[string]bool
	distinct := 0
	for dec.More() {
		var t string
		if err := dec.Decode(&t); err != nil {
			return nil, false, err
		}
		topics = append(topics, t)
		if maxSubs > 0 && len(topics) > maxSubs {
			return topics, true, nil
		}
		if maxBytes > 0 && t != "" {
			if seen == nil {
				seen = map[string]bool{}
			}
			if !seen[t] {
				seen[t] = true
				if distinct += len(t); distinct > maxBytes {
					return topics, true, nil
				}
			}
		}
	}
	_, err = dec.Token()
	return topics, false, err
}

// validateSubscribe applies PocketBase's limits (counted in bytes) plus our
// topic checks, returning PocketBase's per-field error data or nil, and the
// topics' parsed options (nil entries for topics without options).
//
// A topic whose options.query.filter does not compile (bad syntax, an
// identifier we cannot evaluate, more than 200 expressions...) is refused
// here, so that the POST pays for compiling and the publish path never does.
// PocketBase v0.40.4 accepts such a subscription with 204 and then sends it
// nothing (observed); a 400 tells the developer why.
func validateSubscribe(req subscribeRequest, p *broker.Policy) (map[string]any, []*broker.Options) {
	data := map[string]any{}
	switch {
	case req.ClientID == "":
		data["clientId"] = requiredError()
	case len(req.ClientID) > 255:
		data["clientId"] = lengthError(1, 255)
	}
	maxSubs, maxLen := p.MaxSubscriptions, p.MaxTopicLength
	var opts []*broker.Options
	if maxSubs > 0 && len(req.Subscriptions) > maxSubs {
		data["subscriptions"] = lengthError(0, maxSubs)
	} else {
		items := map[string]any{}
		opts = make([]*broker.Options, len(req.Subscriptions))
		for i, topic := range req.Subscriptions {
			if maxLen > 0 && len(topic) > maxLen {
				items[strconv.Itoa(i)] = lengthError(0, maxLen)
			} else if err := broker.ValidateTopic(topic, p.Wildcard); err != nil {
				items[strconv.Itoa(i)] = topicFieldError(err)
			} else if opts[i] = broker.ParseOptions(topic); opts[i].FilterError() != nil {
				items[strconv.Itoa(i)] = filterFieldError(opts[i].FilterError())
			}
		}
		if len(items) > 0 {
			data["subscriptions"] = items
		}
	}
	if len(data) == 0 {
		return nil, opts
	}
	return data, nil
}

// filterFieldError describes a refused options.query.filter.
func filterFieldError(err error) fieldError {
	msg := err.Error()
	var re *rules.Error
	if errors.As(err, &re) {
		msg = fmt.Sprintf("%s at position %d", re.Msg, re.Pos)
	}
	return fieldError{Code: "validation_invalid_filter", Message: "Invalid filter option: " + msg + "."}
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

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// KindSubscribe names forwarded subscription POSTs.
const KindSubscribe = "subscribe"

// forward hands a subscription POST for a client this node does not hold to
// the cluster node that does, and writes its answer; false when no node holds it.
func (h *Handler) forward(w http.ResponseWriter, r *http.Request, req subscribeRequest) bool {
	if forward.Forwarded(r) || h.Broker.Cluster() == nil {
		return false
	}
	body, _ := json.Marshal(req)
	answer, held, err := h.Broker.Forward(r.Context(), req.ClientID, KindSubscribe, forward.Encode(r, body, h.clientIP(r)))
	if err != nil {
		h.logger().Warn("forwarding a subscription POST", zap.String("client", req.ClientID), zap.Error(err))
	}
	if !held {
		return false
	}
	if err := forward.Write(w, answer); err != nil {
		writeError(w, http.StatusServiceUnavailable, "The realtime cluster gave an unreadable answer.", nil)
	}
	return true
}

// ServeForwarded serves a subscription POST another node forwarded for one of
// this node's clients (register it with Broker.HandleForwarded(KindSubscribe, ...)).
func (h *Handler) ServeForwarded(_ *broker.Client, payload []byte) []byte {
	return forward.Serve(payload, http.HandlerFunc(h.serveSubscribe))
}
