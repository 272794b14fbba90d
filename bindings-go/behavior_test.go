package memwatch_test

// Runs every shared scenario in tests/behavior/*.json (read at test time)
// under every backend it lists. See tests/behavior/README.md for the format.

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	memwatch "github.com/memwatch/memwatch/bindings-go"
)

// behaviorDir is where the shared scenarios live, relative to this package;
// MEMWATCH_BEHAVIOR_DIR overrides it.
func behaviorDir() string {
	if d := os.Getenv("MEMWATCH_BEHAVIOR_DIR"); d != "" {
		return d
	}
	return "../tests/behavior"
}

type scenario struct {
	Name        string                     `json:"name"`
	Description string                     `json:"description"`
	Backends    []string                   `json:"backends"`
	Options     map[string]json.RawMessage `json:"options"`
	Buffers     []struct {
		Name string          `json:"name"`
		Size json.RawMessage `json:"size"`
		Fill string          `json:"fill"`
	} `json:"buffers"`
	Regions []struct {
		Key      string          `json:"key"`
		Buffer   string          `json:"buffer"`
		Offset   json.RawMessage `json:"offset"`
		Length   json.RawMessage `json:"length"`
		Name     string          `json:"name"`
		Metadata *string         `json:"metadata"`
	} `json:"regions"`
	Steps []map[string]json.RawMessage `json:"steps"`
}

func TestBehaviorScenarios(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(behaviorDir(), "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no scenarios found in %s", behaviorDir())
	}
	sort.Strings(files)
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var sc scenario
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&sc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(sc.Backends) == 0 {
			t.Fatalf("%s: no backends listed", file)
		}
		t.Run(sc.Name, func(t *testing.T) {
			for _, backend := range sc.Backends {
				backend := backend
				t.Run(backend, func(t *testing.T) { runScenario(t, &sc, backend) })
			}
		})
	}
}

// runner holds one run of a scenario under one backend.
type runner struct {
	t       *testing.T
	sc      *scenario
	backend string
	step    int
	w       *memwatch.Watcher
	buffers map[string][]byte
	regions map[string]memwatch.RegionID
	// delivered collects the events the scenario's callback received.
	mu        sync.Mutex
	delivered []memwatch.ChangeEvent
}

func (r *runner) fatalf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("scenario %s, backend %s, step %d: %s", r.sc.Name, r.backend, r.step, fmt.Sprintf(format, args...))
}

func (r *runner) errorf(format string, args ...any) {
	r.t.Helper()
	r.t.Errorf("scenario %s, backend %s, step %d: %s", r.sc.Name, r.backend, r.step, fmt.Sprintf(format, args...))
}

func runScenario(t *testing.T, sc *scenario, backend string) {
	r := &runner{t: t, sc: sc, backend: backend, step: -1,
		buffers: map[string][]byte{}, regions: map[string]memwatch.RegionID{}}

	opts := []memwatch.Option{memwatch.WithBackend(memwatch.Backend(backend))}
	optNames := make([]string, 0, len(sc.Options))
	for k := range sc.Options {
		optNames = append(optNames, k)
	}
	sort.Strings(optNames)
	for _, k := range optNames {
		v := sc.Options[k]
		switch k {
		case "max_value_bytes":
			opts = append(opts, memwatch.WithMaxValueBytes(r.size(v)))
		case "preview_bytes":
			opts = append(opts, memwatch.WithPreviewBytes(r.size(v)))
		case "writable_window_ms":
			opts = append(opts, memwatch.WithWritableWindow(msDuration(r.size(v))))
		case "snapshots":
			var b bool
			if err := json.Unmarshal(v, &b); err != nil {
				r.fatalf("option snapshots: %v", err)
			}
			opts = append(opts, memwatch.WithSnapshots(b))
		default:
			r.fatalf("unknown option %q", k)
		}
	}

	for _, b := range sc.Buffers {
		size := r.size(b.Size)
		buf, err := memwatch.Alloc(size)
		if err != nil {
			r.fatalf("alloc buffer %s: %v", b.Name, err)
		}
		fill := r.hexBytes(orDefault(b.Fill, "00"))
		if len(fill) != 1 {
			r.fatalf("buffer %s: fill must be one byte", b.Name)
		}
		for i := range buf {
			buf[i] = fill[0]
		}
		r.buffers[b.Name] = buf
		t.Cleanup(func() {
			if err := memwatch.Free(buf); err != nil {
				t.Errorf("free buffer: %v", err)
			}
		})
	}

	w, err := memwatch.NewWatcher(opts...)
	if err != nil {
		r.fatalf("new watcher: %v", err)
	}
	r.w = w
	t.Cleanup(func() { w.Close() }) // runs before the buffers are freed (LIFO)

	for _, reg := range sc.Regions {
		buf := r.buffer(reg.Buffer)
		off, n := r.size(reg.Offset), r.size(reg.Length)
		if off < 0 || n < 0 || off+n > len(buf) {
			r.fatalf("region %s: [%d, %d) outside buffer %s of %d bytes", reg.Key, off, off+n, reg.Buffer, len(buf))
		}
		var wopts []memwatch.WatchOption
		if reg.Metadata != nil {
			wopts = append(wopts, memwatch.WithMetadata(*reg.Metadata))
		}
		id, err := w.Watch(buf[off:off+n], reg.Name, wopts...)
		if err != nil {
			r.fatalf("watch region %s: %v", reg.Key, err)
		}
		r.regions[reg.Key] = id
	}

	for i, step := range sc.Steps {
		r.step = i
		if len(step) != 1 {
			r.fatalf("a step must have exactly one kind, got %d keys", len(step))
		}
		for kind, body := range step {
			switch kind {
			case "write":
				r.doWrite(body)
			case "check":
				r.doCheck(body)
			case "unwatch":
				r.doUnwatch(body)
			case "unwatch_unknown":
				r.doUnwatchUnknown(body)
			case "constants":
				var c struct {
					ExitFlushTimeoutMs int64 `json:"exit_flush_timeout_ms"`
				}
				r.decode(body, &c)
				if got := memwatch.ExitFlushTimeout; got != time.Duration(c.ExitFlushTimeoutMs)*time.Millisecond {
					r.fatalf("ExitFlushTimeout is %v, expected %d ms", got, c.ExitFlushTimeoutMs)
				}
			case "watch_error":
				r.doWatchError(body)
			case "check_error":
				var e struct {
					Expect string `json:"expect"`
				}
				r.decode(body, &e)
				_, err := w.CheckChanges()
				r.expectError("check changes", e.Expect, err)
			case "close":
				if err := w.Close(); err != nil {
					r.fatalf("close: %v", err)
				}
			case "stats":
				r.doStats(body)
			case "set_callback":
				var on bool
				r.decode(body, &on)
				var fn func(memwatch.ChangeEvent)
				if on {
					fn = func(e memwatch.ChangeEvent) {
						r.mu.Lock()
						r.delivered = append(r.delivered, e)
						r.mu.Unlock()
					}
				}
				if err := w.SetCallback(fn); err != nil {
					r.fatalf("set callback: %v", err)
				}
			case "check_callback":
				events, err := w.CheckChanges()
				if err != nil {
					r.fatalf("check changes: %v", err)
				}
				if len(events) != 0 {
					r.fatalf("with a callback, CheckChanges returned %s", describeEvents(events))
				}
				r.mu.Lock()
				got := r.delivered
				r.delivered = nil
				r.mu.Unlock()
				r.compareEvents(body, got)
			default:
				r.fatalf("unknown step kind %q", kind)
			}
		}
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (r *runner) buffer(name string) []byte {
	r.t.Helper()
	buf, ok := r.buffers[name]
	if !ok {
		r.fatalf("unknown buffer %q", name)
	}
	return buf
}

// size parses an integer or "Np", "Np+M", "Np-M" (N pages of the OS page size).
func (r *runner) size(raw json.RawMessage) int {
	r.t.Helper()
	n, err := parseSize(raw)
	if err != nil {
		r.fatalf("%v", err)
	}
	return n
}

func parseSize(raw json.RawMessage) (int, error) {
	var num json.Number
	if err := json.Unmarshal(raw, &num); err == nil {
		v, err := strconv.Atoi(num.String())
		if err != nil {
			return 0, fmt.Errorf("size %s: %v", raw, err)
		}
		return v, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("size %s: not an integer or a page form", raw)
	}
	pageEnd := strings.IndexByte(s, 'p')
	if pageEnd < 0 {
		return 0, fmt.Errorf("size %q: expected \"Np\", \"Np+M\" or \"Np-M\"", s)
	}
	pages, err := strconv.Atoi(s[:pageEnd])
	if err != nil {
		return 0, fmt.Errorf("size %q: %v", s, err)
	}
	v := pages * memwatch.PageSize()
	rest := s[pageEnd+1:]
	if rest != "" {
		if rest[0] != '+' && rest[0] != '-' {
			return 0, fmt.Errorf("size %q: expected + or - after p", s)
		}
		m, err := strconv.Atoi(rest[1:])
		if err != nil {
			return 0, fmt.Errorf("size %q: %v", s, err)
		}
		if rest[0] == '+' {
			v += m
		} else {
			v -= m
		}
	}
	return v, nil
}

func (r *runner) hexBytes(s string) []byte {
	r.t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		r.fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// value parses a value spec: a hex string or {len, fill, patches}.
func (r *runner) value(raw json.RawMessage) []byte {
	r.t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return r.hexBytes(s)
	}
	var spec struct {
		Len     json.RawMessage     `json:"len"`
		Fill    string              `json:"fill"`
		Patches [][]json.RawMessage `json:"patches"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		r.fatalf("bad value spec %s: %v", raw, err)
	}
	v := make([]byte, r.size(spec.Len))
	fill := r.hexBytes(orDefault(spec.Fill, "00"))
	if len(fill) != 1 {
		r.fatalf("value spec fill must be one byte: %s", raw)
	}
	for i := range v {
		v[i] = fill[0]
	}
	for _, p := range spec.Patches {
		if len(p) != 2 {
			r.fatalf("bad patch in %s", raw)
		}
		off := r.size(p[0])
		var h string
		if err := json.Unmarshal(p[1], &h); err != nil {
			r.fatalf("bad patch bytes in %s", raw)
		}
		b := r.hexBytes(h)
		if off < 0 || off+len(b) > len(v) {
			r.fatalf("patch outside value in %s", raw)
		}
		copy(v[off:], b)
	}
	return v
}

func (r *runner) decode(raw json.RawMessage, into any) {
	r.t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		r.fatalf("bad step %s: %v", raw, err)
	}
}

func (r *runner) doWrite(body json.RawMessage) {
	var wr struct {
		Buffer string          `json:"buffer"`
		Offset json.RawMessage `json:"offset"`
		Hex    *string         `json:"hex"`
		Len    json.RawMessage `json:"len"`
		Byte   *string         `json:"byte"`
	}
	r.decode(body, &wr)
	buf := r.buffer(wr.Buffer)
	off := r.size(wr.Offset)
	var data []byte
	switch {
	case wr.Hex != nil:
		data = r.hexBytes(*wr.Hex)
	case wr.Byte != nil && wr.Len != nil:
		b := r.hexBytes(*wr.Byte)
		if len(b) != 1 {
			r.fatalf("write byte must be one byte")
		}
		data = bytes.Repeat(b, r.size(wr.Len))
	default:
		r.fatalf("write needs hex, or len and byte: %s", body)
	}
	if off < 0 || off+len(data) > len(buf) {
		r.fatalf("write [%d, %d) outside buffer %s", off, off+len(data), wr.Buffer)
	}
	// Plain stores by this goroutine's thread, byte by byte.
	for i, b := range data {
		buf[off+i] = b
	}
}

func (r *runner) doUnwatch(body json.RawMessage) {
	var u struct {
		Region string `json:"region"`
		Expect bool   `json:"expect"`
	}
	r.decode(body, &u)
	id, ok := r.regions[u.Region]
	if !ok {
		r.fatalf("unknown region key %q", u.Region)
	}
	got, err := r.w.Unwatch(id)
	if err != nil {
		r.fatalf("unwatch %s: %v", u.Region, err)
	}
	if got != u.Expect {
		r.errorf("unwatch %s: expected %v, got %v", u.Region, u.Expect, got)
	}
}

func (r *runner) doUnwatchUnknown(body json.RawMessage) {
	var u struct {
		Expect bool `json:"expect"`
	}
	r.decode(body, &u)
	got, err := r.w.Unwatch(4000000000)
	if err != nil {
		r.fatalf("unwatch unknown: %v", err)
	}
	if got != u.Expect {
		r.errorf("unwatch of unknown id 4000000000: expected %v, got %v", u.Expect, got)
	}
}

func (r *runner) doCheck(body json.RawMessage) {
	events, err := r.w.CheckChanges()
	if err != nil {
		r.fatalf("check changes: %v", err)
	}
	r.compareEvents(body, events)
}

// errorKinds maps the engine's error kind names to the sentinel errors.
var errorKinds = map[string]error{
	"invalid_argument": memwatch.ErrInvalidArgument,
	"unmapped":         memwatch.ErrUnmapped,
	"read_only":        memwatch.ErrReadOnly,
	"overlap":          memwatch.ErrOverlap,
	"unsupported":      memwatch.ErrUnsupported,
	"closed":           memwatch.ErrClosed,
	"os":               memwatch.ErrOS,
}

func (r *runner) expectError(op, kind string, err error) {
	r.t.Helper()
	want, ok := errorKinds[kind]
	if !ok {
		r.fatalf("unknown error kind %q", kind)
	}
	if !errors.Is(err, want) {
		r.errorf("%s: expected a %s error, got %v", op, kind, err)
	}
}

func (r *runner) doWatchError(body json.RawMessage) {
	var e struct {
		Null   bool            `json:"null"`
		Buffer string          `json:"buffer"`
		Offset json.RawMessage `json:"offset"`
		Length json.RawMessage `json:"length"`
		Expect string          `json:"expect"`
	}
	r.decode(body, &e)
	var target []byte // nil: the null of a slice-taking API
	if !e.Null {
		buf := r.buffer(e.Buffer)
		off := r.size(e.Offset)
		target = buf[off : off+r.size(e.Length)]
	}
	_, err := r.w.Watch(target, "bad")
	r.expectError("watch", e.Expect, err)
}

// statsField finds a Stats field by its snake_case scenario name:
// fallback_regions -> FallbackRegions; latency_p50_ns -> LatencyP50 (a time.Duration).
func statsField(s memwatch.Stats, name string) (reflect.Value, bool) {
	pascal := ""
	for _, part := range strings.Split(name, "_") {
		pascal += strings.ToUpper(part[:1]) + part[1:]
	}
	v := reflect.ValueOf(s)
	if f := v.FieldByName(pascal); f.IsValid() {
		return f, true
	}
	if f := v.FieldByName(strings.TrimSuffix(pascal, "Ns")); f.IsValid() && f.Type() == reflect.TypeOf(time.Duration(0)) {
		return f, true
	}
	return reflect.Value{}, false
}

func (r *runner) doStats(body json.RawMessage) {
	var spec struct {
		Fields []string                   `json:"fields"`
		Equal  map[string]json.RawMessage `json:"equal"`
	}
	r.decode(body, &spec)
	s := r.w.Stats()
	for _, name := range spec.Fields {
		if _, ok := statsField(s, name); !ok {
			r.errorf("stats field %s missing from %+v", name, s)
		}
	}
	for name, raw := range spec.Equal {
		f, ok := statsField(s, name)
		if !ok {
			r.errorf("stats field %s missing from %+v", name, s)
			continue
		}
		got := fmt.Sprint(f.Interface())
		if f.Kind() == reflect.String {
			got = strconv.Quote(got)
		} else if f.Type() == reflect.TypeOf(time.Duration(0)) {
			got = strconv.FormatInt(int64(f.Interface().(time.Duration)), 10)
		}
		if got != string(raw) {
			r.errorf("stats field %s: expected %s, got %s", name, raw, got)
		}
	}
}

func (r *runner) compareEvents(body json.RawMessage, events []memwatch.ChangeEvent) {
	var expected []map[string]json.RawMessage
	r.decode(body, &expected)
	if len(events) != len(expected) {
		r.fatalf("expected %d events, got %d: %s", len(expected), len(events), describeEvents(events))
	}
	byRegion := map[memwatch.RegionID]memwatch.ChangeEvent{}
	for _, e := range events {
		if _, dup := byRegion[e.RegionID]; dup {
			r.fatalf("two events for region %d in one check: %s", e.RegionID, describeEvents(events))
		}
		byRegion[e.RegionID] = e
	}
	for _, exp := range expected {
		var key string
		if err := json.Unmarshal(exp["region"], &key); err != nil {
			r.fatalf("expected event without region: %v", exp)
		}
		id, ok := r.regions[key]
		if !ok {
			r.fatalf("unknown region key %q", key)
		}
		e, ok := byRegion[id]
		if !ok {
			r.errorf("no event for region %s (id %d); got %s", key, id, describeEvents(events))
			continue
		}
		r.compareEvent(key, exp, e)
	}
}

func (r *runner) compareEvent(key string, exp map[string]json.RawMessage, e memwatch.ChangeEvent) {
	fields := make([]string, 0, len(exp))
	for k := range exp {
		fields = append(fields, k)
	}
	sort.Strings(fields)
	for _, field := range fields {
		raw := exp[field]
		isNull := string(raw) == "null"
		switch field {
		case "region":
		case "variable_name":
			var want string
			r.decode(raw, &want)
			if e.VariableName != want {
				r.errorf("region %s: variable_name: expected %q, got %q", key, want, e.VariableName)
			}
		case "how_big":
			if want := r.size(raw); e.HowBig != want {
				r.errorf("region %s: how_big: expected %d, got %d", key, want, e.HowBig)
			}
		case "coalesced":
			var want uint32
			r.decode(raw, &want)
			if e.Coalesced != want {
				r.errorf("region %s: coalesced: expected %d, got %d", key, want, e.Coalesced)
			}
		case "metadata":
			want := ""
			if !isNull {
				r.decode(raw, &want)
			}
			if e.Metadata != want {
				r.errorf("region %s: metadata: expected %q, got %q", key, want, e.Metadata)
			}
		case "changed_ranges":
			var pairs [][]json.RawMessage
			r.decode(raw, &pairs)
			want := []memwatch.ByteRange{}
			for _, p := range pairs {
				if len(p) != 2 {
					r.fatalf("bad changed range %s", raw)
				}
				want = append(want, memwatch.ByteRange{Offset: r.size(p[0]), Len: r.size(p[1])})
			}
			if !equalRanges(want, e.ChangedRanges) {
				r.errorf("region %s: changed_ranges: expected %v, got %v", key, want, e.ChangedRanges)
			}
		case "old_value", "new_value", "old_preview", "new_preview":
			got := map[string][]byte{"old_value": e.OldValue, "new_value": e.NewValue,
				"old_preview": e.OldPreview, "new_preview": e.NewPreview}[field]
			if isNull {
				if got != nil {
					r.errorf("region %s: %s: expected absent, got %d bytes %s", key, field, len(got), shortHex(got))
				}
				continue
			}
			want := r.value(raw)
			if got == nil {
				r.errorf("region %s: %s: expected %d bytes %s, got absent", key, field, len(want), shortHex(want))
			} else if !bytes.Equal(want, got) {
				r.errorf("region %s: %s: %s", key, field, bytesDiff(want, got))
			}
		default:
			r.fatalf("unknown expected field %q", field)
		}
	}
}

func equalRanges(a, b []memwatch.ByteRange) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func shortHex(b []byte) string {
	if len(b) > 32 {
		return hex.EncodeToString(b[:32]) + "..."
	}
	return hex.EncodeToString(b)
}

func bytesDiff(want, got []byte) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	lo := i - 4
	if lo < 0 {
		lo = 0
	}
	cut := func(b []byte) string {
		hi := lo + 16
		if hi > len(b) {
			hi = len(b)
		}
		if lo >= hi {
			return ""
		}
		return hex.EncodeToString(b[lo:hi])
	}
	return fmt.Sprintf("expected %d bytes, got %d; first difference at offset %d: expected [%d:] %s, got %s",
		len(want), len(got), i, lo, cut(want), cut(got))
}

func describeEvents(events []memwatch.ChangeEvent) string {
	parts := make([]string, len(events))
	for i, e := range events {
		parts[i] = fmt.Sprintf("{region %d %q ranges %v}", e.RegionID, e.VariableName, e.ChangedRanges)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
