//go:build linux

package bench

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Set overrides fields of p from "Name=value,Name=value" (durations as 30s,
// lists as 1000/5000), for one-off experiments.
func (p *Params) Set(spec string) error { return setParams(p, spec) }

// setParams overrides fields of the struct p points to from "Name=value,...".
func setParams(p any, spec string) error {
	v := reflect.ValueOf(p).Elem()
	for _, kv := range strings.Split(spec, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		name, val, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("param %q: want Name=value", kv)
		}
		f := v.FieldByName(name)
		if !f.IsValid() {
			return fmt.Errorf("no param %q", name)
		}
		if err := setField(f, val); err != nil {
			return fmt.Errorf("param %s: %w", name, err)
		}
	}
	return nil
}

func setField(f reflect.Value, val string) error {
	switch {
	case f.Type() == reflect.TypeOf(time.Duration(0)):
		d, err := time.ParseDuration(val)
		f.SetInt(int64(d))
		return err
	case f.Kind() == reflect.Int:
		n, err := strconv.Atoi(val)
		f.SetInt(int64(n))
		return err
	case f.Kind() == reflect.Float64:
		x, err := strconv.ParseFloat(val, 64)
		f.SetFloat(x)
		return err
	case f.Kind() == reflect.Slice:
		parts := strings.Split(val, "/")
		s := reflect.MakeSlice(f.Type(), len(parts), len(parts))
		for i, part := range parts {
			if err := setField(s.Index(i), part); err != nil {
				return err
			}
		}
		f.Set(s)
		return nil
	}
	return fmt.Errorf("unsupported type %s", f.Type())
}
