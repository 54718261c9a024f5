package realtime

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// adaptHandler adapts a site whose only route is a realtime directive and
// returns that handler's JSON.
func adaptHandler(t *testing.T, directive string) (map[string]any, error) {
	t.Helper()
	cf := ":8090 {\n" + directive + "\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Match  []map[string]any `json:"match"`
						Handle []map[string]any `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, route := range srv.Routes {
			for _, h := range route.Handle {
				if h["handler"] == "realtime" {
					h["_match"] = route.Match
					return h, nil
				}
			}
		}
	}
	t.Fatalf("no realtime handler in %s", out)
	return nil, nil
}

func TestCaddyfileEveryOption(t *testing.T) {
	h, err := adaptHandler(t, `realtime /api/realtime {
		broker            chat
		idle_timeout      2m
		max_lifetime      30m
		heartbeat         0
		write_timeout     3s
		max_clients       500
		max_subscriptions 20
		max_topic_length  300
		client_queue      256KiB
		max_clients_per_ip 0
		max_subscription_bytes 32KiB
		max_topic_variants 4
		max_queued_bytes  0
		resume_window     30s
		resume_bytes      1MiB
		body_timeout      2s
		wildcard          off
		compress          on
		hijack            off
		cors_origins      https://a.example https://b.example
	}`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"broker":                 "chat",
		"idle_timeout":           float64(120e9),
		"max_lifetime":           float64(1800e9),
		"heartbeat":              float64(0),
		"write_timeout":          float64(3e9),
		"max_clients":            float64(500),
		"max_subscriptions":      float64(20),
		"max_topic_length":       float64(300),
		"client_queue":           float64(256 << 10),
		"max_clients_per_ip":     float64(0),
		"max_subscription_bytes": float64(32 << 10),
		"max_topic_variants":     float64(4),
		"max_queued_bytes":       float64(0),
		"resume_window":          float64(30e9),
		"resume_bytes":           float64(1 << 20),
		"body_timeout":           float64(2e9),
		"wildcard":               false,
		"compress":               true,
		"hijack":                 false,
		"cors_origins":           []any{"https://a.example", "https://b.example"},
	}
	for k, v := range want {
		got, _ := json.Marshal(h[k])
		exp, _ := json.Marshal(v)
		if string(got) != string(exp) {
			t.Errorf("%s = %s, want %s", k, got, exp)
		}
	}
	match, _ := json.Marshal(h["_match"])
	if string(match) != `[{"path":["/api/realtime"]}]` {
		t.Errorf("matcher = %s", match)
	}
}

func TestCaddyfileDefaultsAreOmitted(t *testing.T) {
	h, err := adaptHandler(t, `realtime /api/realtime`)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 { // handler and _match, nothing else
		t.Errorf("bare directive produced options: %v", h)
	}
}

func TestCaddyfileOrderedBeforeReverseProxy(t *testing.T) {
	cf := ":8090 {\n\treverse_proxy 127.0.0.1:9\n\trealtime /api/realtime\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cf), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if i, j := strings.Index(s, `"handler":"realtime"`), strings.Index(s, `"handler":"reverse_proxy"`); i < 0 || j < 0 || i > j {
		t.Errorf("realtime is not ordered before reverse_proxy:\n%s", s)
	}
}

func TestCaddyfileErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown subdirective", "realtime {\n\tfrobnicate 3\n}", `unrecognized realtime subdirective "frobnicate"`},
		{"bad duration", "realtime {\n\tidle_timeout soon\n}", `idle_timeout: invalid duration "soon"`},
		{"negative duration", "realtime {\n\theartbeat -1s\n}", `heartbeat: duration "-1s" must not be negative`},
		{"missing value", "realtime {\n\tbroker\n}", `broker: expected one value`},
		{"extra value", "realtime {\n\tmax_clients 1 2\n}", `max_clients: expected one value, got extra "2"`},
		{"bad number", "realtime {\n\tmax_subscriptions many\n}", `max_subscriptions: invalid number "many"`},
		{"negative number", "realtime {\n\tmax_clients -4\n}", `max_clients: invalid number "-4"`},
		{"bad size", "realtime {\n\tclient_queue lots\n}", `client_queue: invalid size "lots"`},
		{"bad budget size", "realtime {\n\tmax_queued_bytes -1\n}", `max_queued_bytes: invalid size "-1"`},
		{"bad resume size", "realtime {\n\tresume_bytes lots\n}", `resume_bytes: invalid size "lots"`},
		{"resume window without value", "realtime {\n\tresume_window\n}", `resume_window`},
		{"negative budget", "realtime {\n\tmax_clients_per_ip -1\n}", `max_clients_per_ip: invalid number "-1"`},
		{"bad switch", "realtime {\n\twildcard yes\n}", `wildcard: expected on or off, got "yes"`},
		{"no origins", "realtime {\n\tcors_origins\n}", `cors_origins: expected at least one origin`},
		{"path argument after matcher", "realtime /a /b", `wrong argument count`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptHandler(t, tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCaddyfileAccessOptions(t *testing.T) {
	h, err := adaptHandler(t, `realtime /api/realtime {
		auth {
			url          http://127.0.0.1:3000/api/me
			method       POST
			timeout      2s
			headers      Authorization Cookie
			record_path  record
			cache_ttl    30s
			negative_ttl 5s
			cache_size   500
			max_concurrent 16
		}
		superusers "@request.auth.collectionName = '_superusers'"
		collection posts {
			list_rule ""
			view_rule "status = 'published' || author = @request.auth.id"
		}
		collection drafts {
			view_rule "author = @request.auth.id"
			hidden_fields secret notes
		}
		topic admin_* "@request.auth.isAdmin = true"
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(map[string]any{"auth": h["auth"], "superusers": h["superusers"], "collections": h["collections"], "topics": h["topics"]})
	want := `{"auth":{"cache_size":500,"cache_ttl":30000000000,"headers":["Authorization","Cookie"],"max_concurrent":16,"method":"POST","negative_ttl":5000000000,"record_path":"record","timeout":2000000000,"url":"http://127.0.0.1:3000/api/me"},` +
		`"collections":{"drafts":{"hidden_fields":["secret","notes"],"view_rule":"author = @request.auth.id"},"posts":{"list_rule":"","view_rule":"status = 'published' || author = @request.auth.id"}},` +
		`"superusers":"@request.auth.collectionName = '_superusers'",` +
		`"topics":[{"pattern":"admin_*","rule":"@request.auth.isAdmin = true"}]}`
	if string(got) != want {
		t.Errorf("access options\n got %s\nwant %s", got, want)
	}

	h, err = adaptHandler(t, `realtime {
		auth {
			jwt {
				public_key /etc/keys/jwt.pem
				algorithms RS256 ES256
				issuer     https://auth.example
				audience   app
			}
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got, _ = json.Marshal(h["auth"])
	if want := `{"jwt":{"algorithms":["RS256","ES256"],"audience":"app","issuer":"https://auth.example","public_key_file":"/etc/keys/jwt.pem"}}`; string(got) != want {
		t.Errorf("jwt options\n got %s\nwant %s", got, want)
	}
}

func TestCaddyfileAccessErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"unknown auth option", "realtime {\n\tauth {\n\t\ttoken x\n\t}\n}", `auth: unrecognized subdirective "token"`},
		{"unknown jwt option", "realtime {\n\tauth {\n\t\tjwt {\n\t\t\tkey x\n\t\t}\n\t}\n}", `auth jwt: unrecognized subdirective "key"`},
		{"auth argument", "realtime {\n\tauth http://x\n}", `auth: unexpected argument "http://x"`},
		{"unknown collection option", "realtime {\n\tcollection posts {\n\t\tcreate_rule \"\"\n\t}\n}", `collection posts: unrecognized subdirective "create_rule"`},
		{"collection without name", "realtime {\n\tcollection\n}", `collection: expected a collection name`},
		{"collection twice", "realtime {\n\tcollection a\n\tcollection a\n}", `collection a: configured twice`},
		{"topic without rule", "realtime {\n\ttopic admin_*\n}", `topic: expected a pattern and a rule`},
		{"superusers without rule", "realtime {\n\tsuperusers\n}", `superusers: expected one value`},
		{"empty headers", "realtime {\n\tauth {\n\t\theaders\n\t}\n}", `headers: expected at least one header name`},
		{"max_concurrent not a number", "realtime {\n\tauth {\n\t\tmax_concurrent lots\n\t}\n}", `max_concurrent: invalid number "lots"`},
		{"max_concurrent negative", "realtime {\n\tauth {\n\t\tmax_concurrent -1\n\t}\n}", `max_concurrent: invalid number "-1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptHandler(t, tc.body)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestCaddyfileTransport(t *testing.T) {
	h, err := adaptHandler(t, `realtime {
		transport nats nats://10.0.0.1:4222 nats://10.0.0.2:4222 {
			stream   rt
			replicas 3
			storage  memory
			max_bytes 1GiB
			token    secret
			user     caddy pw
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h["transport"])
	want := `{"max_bytes":1073741824,"password":"pw","protocol":"nats","replicas":3,"storage":"memory","stream":"rt","token":"secret","urls":["nats://10.0.0.1:4222","nats://10.0.0.2:4222"],"user":"caddy"}`
	if string(got) != want {
		t.Errorf("transport JSON\n got %s\nwant %s", got, want)
	}
	if h, err = adaptHandler(t, "realtime {\n transport memory\n}"); err != nil || h["transport"].(map[string]any)["protocol"] != "memory" {
		t.Errorf("transport memory: %v %v", h["transport"], err)
	}
	for _, tt := range []struct{ directive, want string }{
		{"transport", "expected memory or nats"},
		{"transport kafka", `unknown transport "kafka"`},
		{"transport memory extra", "unexpected argument"},
		{"transport nats {\n bogus 1\n}", `unrecognized subdirective "bogus"`},
		{"transport nats {\n user onlyname\n}", "expected a name and a password"},
		{"transport nats {\n tls {\n pem x\n }\n}", `tls: unrecognized "pem"`},
	} {
		_, err := adaptHandler(t, "realtime {\n"+tt.directive+"\n}")
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want it to mention %q", tt.directive, err, tt.want)
		}
	}
	for _, tt := range []struct {
		n    NATSTransport
		want string
	}{
		{NATSTransport{}, "expected at least one server URL"},
		{NATSTransport{URLs: []string{"nats://h:4222"}, Storage: "disk"}, "storage must be file or memory"},
		{NATSTransport{URLs: []string{"nats://h:4222"}, Replicas: 7}, "replicas must be 1 to 5"},
		{NATSTransport{URLs: []string{"10.0.0.1:4222"}}, "is not a URL"},
		{NATSTransport{URLs: []string{"nats://h:4222"}, Stream: "a.b"}, "must not contain"},
		{NATSTransport{URLs: []string{"nats://h:4222"}, TLS: &NATSTLS{Cert: "c.pem"}}, "both cert and key"},
		{NATSTransport{URLs: []string{"nats://h:4222"}, TLS: &NATSTLS{CA: "/nonexistent/ca.pem"}}, "tls ca"},
	} {
		if err := tt.n.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: Validate() = %v, want %q", tt.n, err, tt.want)
		}
	}
}
