package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/caddy-realtime/realtime/broker"
)

// maxBody bounds what is read of an endpoint's (or JWKS) response.
const maxBody = 1 << 20

// lookupURL asks the site's endpoint who the credentials belong to.
func (a *Authenticator) lookupURL(ctx context.Context, c *credentials) (*broker.Auth, time.Duration, error) {
	where := a.cfg.Method + " " + endpointName(a.cfg.url)
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, a.cfg.Method, a.cfg.url.String(), nil)
	if err != nil {
		return nil, 0, unavailable("auth endpoint %s: %v", where, err)
	}
	for name, vals := range c.header {
		req.Header[name] = vals
	}
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, 0, requestError(ctx, "auth endpoint "+where, err, a.cfg.Timeout)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		drain(resp.Body)
		return nil, 0, nil
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		drain(resp.Body)
		hint := ""
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			hint = " (redirects are not followed: the endpoint should answer 401 or 403 for credentials it refuses)"
		}
		return nil, 0, unavailable("auth endpoint %s answered %s%s", where, statusText(resp.StatusCode), hint)
	}

	body, err := readLimited(resp.Body)
	if err != nil {
		return nil, 0, bodyError(ctx, "auth endpoint "+where, err, a.cfg.Timeout)
	}
	v, err := decodeJSON(body)
	if err != nil {
		return nil, 0, unavailable("auth endpoint %s answered %s with a body that is not JSON: %v", where, statusText(resp.StatusCode), err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, 0, unavailable("auth endpoint %s answered %s with JSON that is not an object", where, statusText(resp.StatusCode))
	}
	rec := obj
	for _, p := range a.cfg.path {
		if rec, ok = rec[p].(map[string]any); !ok {
			break
		}
	}
	id, _ := rec["id"].(string)
	if !ok || id == "" {
		at := "at the top level"
		if a.cfg.RecordPath != "" {
			at = "at " + strconv.Quote(a.cfg.RecordPath)
		}
		return nil, 0, unavailable("auth endpoint returned no auth record %s (an object with a non-empty string \"id\"); %s answered %s", at, where, statusText(resp.StatusCode))
	}
	return &broker.Auth{ID: id, Collection: collectionOf(rec), Record: rec}, 0, nil
}

// collectionOf is the record's collectionId, else its collectionName, else "".
func collectionOf(rec map[string]any) string {
	if s, ok := rec["collectionId"].(string); ok && s != "" {
		return s
	}
	if s, ok := rec["collectionName"].(string); ok {
		return s
	}
	return ""
}

// decodeJSON decodes exactly one JSON value, numbers as json.Number.
func decodeJSON(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty body")
		}
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// readLimited reads at most maxBody bytes and fails beyond.
func readLimited(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBody {
		return nil, errTooLarge
	}
	return b, nil
}

var errTooLarge = errors.New("response body larger than 1 MiB")

// drain reads a little of an unused body so the connection can be reused.
func drain(r io.Reader) { _, _ = io.Copy(io.Discard, io.LimitReader(r, 64<<10)) }

// requestError describes a failed request without repeating the URL that
// *url.Error carries (and so without its query string).
func requestError(ctx context.Context, what string, err error, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return unavailable("%s timed out after %v", what, timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return unavailable("%s failed: %v", what, err)
}

func bodyError(ctx context.Context, what string, err error, timeout time.Duration) error {
	if errors.Is(err, errTooLarge) {
		return unavailable("%s answered with a %v", what, err)
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return unavailable("%s timed out after %v while sending its answer", what, timeout)
	}
	return unavailable("%s: reading the answer: %v", what, err)
}

// endpointName is u without user info, query or fragment: safe for errors and logs.
func endpointName(u *url.URL) string {
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	return v.String()
}

func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}
