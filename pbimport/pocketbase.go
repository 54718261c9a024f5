// Package pbimport reads a PocketBase's collections through its REST API and
// writes the matching `realtime` Caddyfile block: the auth endpoint, the
// superusers rule, and each collection's list and view rules and hidden
// fields. Rules that cannot run without PocketBase's database are written
// commented out, so that their collection stays superusers only.
//
// It is plain Go; the `caddy realtime import-pocketbase` command wraps it.
package pbimport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Collection is a PocketBase collection as GET /api/collections returns it,
// reduced to what the import reads.
type Collection struct {
	ID       string  `json:"id"`
	Name     string  `json:"name"`
	Type     string  `json:"type"` // base, auth or view
	System   bool    `json:"system"`
	ListRule *string `json:"listRule"` // nil: superusers only; "": everyone
	ViewRule *string `json:"viewRule"`
	Fields   []Field `json:"fields"`
}

// Field is one field of a collection's schema.
type Field struct {
	Name         string `json:"name"`
	Type         string `json:"type"` // text, number, bool, relation, json, select, file...
	Hidden       bool   `json:"hidden"`
	MaxSelect    int    `json:"maxSelect"`
	CollectionID string `json:"collectionId"` // a relation's target
}

func (c *Collection) field(name string) *Field {
	for i := range c.Fields {
		if c.Fields[i].Name == name {
			return &c.Fields[i]
		}
	}
	return nil
}

// Client talks to one PocketBase.
type Client struct {
	// URL is PocketBase's base URL, e.g. http://127.0.0.1:8090.
	URL string
	// Token is a superuser's auth token.
	Token string
	// HTTP is the client used; nil means http.DefaultClient.
	HTTP *http.Client
}

// Login signs a superuser in with email and password and keeps the token.
func (c *Client) Login(ctx context.Context, email, password string) error {
	body, _ := json.Marshal(map[string]string{"identity": email, "password": password})
	var out struct {
		Token string `json:"token"`
	}
	if err := c.do(ctx, http.MethodPost, "/api/collections/_superusers/auth-with-password", body, &out); err != nil {
		return fmt.Errorf("signing in as superuser %s: %w", email, err)
	}
	if out.Token == "" {
		return errors.New("signing in as superuser: PocketBase answered without a token")
	}
	c.Token = out.Token
	return nil
}

// Collections lists every collection, page by page.
func (c *Client) Collections(ctx context.Context) ([]Collection, error) {
	var all []Collection
	for page := 1; ; page++ {
		var out struct {
			Page       int          `json:"page"`
			TotalPages int          `json:"totalPages"`
			Items      []Collection `json:"items"`
		}
		path := fmt.Sprintf("/api/collections?perPage=500&page=%d&sort=name", page)
		if err := c.do(ctx, http.MethodGet, path, nil, &out); err != nil {
			return nil, fmt.Errorf("listing collections: %w", err)
		}
		all = append(all, out.Items...)
		if page >= out.TotalPages || len(out.Items) == 0 {
			return all, nil
		}
	}
}

// do sends one request and decodes a 2xx JSON answer into out. Other
// answers become errors that say what to fix.
func (c *Client) do(ctx context.Context, method, path string, body []byte, out any) error {
	base, err := url.Parse(c.URL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("invalid PocketBase URL %q: expected e.g. http://127.0.0.1:8090", c.URL)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.URL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach PocketBase at %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading PocketBase's answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var pe struct {
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &pe) == nil && pe.Message != "" {
			msg = pe.Message
		}
		if len(msg) > 300 {
			msg = msg[:300] + "…"
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			if strings.HasSuffix(path, "auth-with-password") {
				return fmt.Errorf("PocketBase refused the superuser credentials (%d: %s)", resp.StatusCode, msg)
			}
			return fmt.Errorf("PocketBase refused the token (%d: %s): it must be a valid superuser token (--token, POCKETBASE_TOKEN, or --email and --password of a superuser)", resp.StatusCode, msg)
		case http.StatusBadRequest:
			if strings.HasSuffix(path, "auth-with-password") {
				return fmt.Errorf("PocketBase refused the superuser credentials (%d: %s)", resp.StatusCode, msg)
			}
		}
		return fmt.Errorf("PocketBase answered %s %s with %d: %s", method, path, resp.StatusCode, msg)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: not PocketBase's JSON (is %s a PocketBase?): %w", method, path, c.URL, err)
	}
	return nil
}
