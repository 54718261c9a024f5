package rules

import "testing"

// BenchmarkEvalOwnerRule measures the hot path: one owner rule, one record,
// one authenticated subscriber.
func BenchmarkEvalOwnerRule(b *testing.B) {
	r := MustCompile(`@request.auth.id = author && status != "draft"`)
	env := &Env{
		Record:  decode(b, testRecord),
		Auth:    decode(b, testAuth),
		Method:  "GET",
		Context: "realtime",
	}
	if !r.Eval(env) {
		b.Fatal("the owner must pass")
	}
	b.ReportAllocs()
	for b.Loop() {
		if !r.Eval(env) {
			b.Fatal("the owner must pass")
		}
	}
}

// BenchmarkEvalAnyOf measures a multi-valued comparison.
func BenchmarkEvalAnyOf(b *testing.B) {
	r := MustCompile(`members.id ?= @request.auth.id || tags ?~ "cad"`)
	env := &Env{Record: decode(b, testRecord), Auth: decode(b, `{"id": "u2"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if !r.Eval(env) {
			b.Fatal("a member must pass")
		}
	}
}

// BenchmarkCompile measures provisioning cost.
func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(`@request.auth.id != "" && (status = "active" || author = @request.auth.id) && tags:each ~ "pb_%"`); err != nil {
			b.Fatal(err)
		}
	}
}
