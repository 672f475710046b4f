package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// keyPath is the position of a value in the file: string segments are
// mapping keys, int segments are sequence indexes.
type keyPath []any

// with returns p extended by seg without sharing p's backing array, so
// sibling paths built from the same parent never overwrite each other.
func (p keyPath) with(seg any) keyPath {
	return append(p[:len(p):len(p)], seg)
}

// String renders p as it is written in messages: poller_stream.topic,
// jobs.choria.targets[1].url.
func (p keyPath) String() string {
	var b strings.Builder
	for _, seg := range p {
		switch s := seg.(type) {
		case int:
			fmt.Fprintf(&b, "[%d]", s)
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s)
		}
	}
	return b.String()
}

// location renders "file:line", or just "file" when the line is unknown.
func location(file string, line int) string {
	if file == "" {
		file = "config"
	}
	if line > 0 {
		return fmt.Sprintf("%s:%d", file, line)
	}
	return file
}

// posErrorf builds the error format every message of this package shares:
// "file:line: key.path: message". format may use %w.
func posErrorf(file string, line int, p keyPath, format string, args ...any) error {
	if len(p) == 0 {
		return fmt.Errorf("%s: "+format, append([]any{location(file, line)}, args...)...)
	}
	return fmt.Errorf("%s: %s: "+format, append([]any{location(file, line), p}, args...)...)
}

// valueError is returned by the leaf unmarshalers (Duration, ByteSize,
// URLList). It keeps the node so that Parse can name the key and line:
// yaml.v3 passes the very node it decodes to UnmarshalYAML.
type valueError struct {
	node *yaml.Node
	err  error
}

func (e *valueError) Error() string { return e.err.Error() }
func (e *valueError) Unwrap() error { return e.err }

// resolve follows aliases to the node they name. yaml.v3 refuses an anchor
// that contains itself, but the loop is bounded anyway.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is absent or an explicit YAML null; yaml.v3 then
// leaves scalar fields at their defaults, so both mean "not set".
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// lookup finds key in mapping n, including keys merged in with "<<" (which
// yaml.v3 honours when decoding). Direct keys win over merged ones, as in
// YAML. depth bounds merges of merges.
func lookup(n *yaml.Node, key string, depth int) (k, v *yaml.Node) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode || depth > 10 {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if kn := resolve(n.Content[i]); kn != nil && kn.Kind == yaml.ScalarNode && kn.Value == key && kn.ShortTag() != "!!merge" {
			return n.Content[i], n.Content[i+1]
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if kn := resolve(n.Content[i]); kn == nil || kn.ShortTag() != "!!merge" {
			continue
		}
		for _, m := range mergeSources(n.Content[i+1]) {
			if k, v := lookup(m, key, depth+1); k != nil {
				return k, v
			}
		}
	}
	return nil, nil
}

// mergeSources returns the mappings a "<<" value names: one mapping or a
// sequence of them.
func mergeSources(v *yaml.Node) []*yaml.Node {
	v = resolve(v)
	if v == nil {
		return nil
	}
	if v.Kind == yaml.SequenceNode {
		return v.Content
	}
	return []*yaml.Node{v}
}

// find walks p from root. It returns the line of the deepest key (or
// sequence item) present along p, and the value node at the end of p when
// the whole path is present.
func find(root *yaml.Node, p keyPath) (line int, v *yaml.Node) {
	n := root
	for _, seg := range p {
		n = resolve(n)
		if n == nil {
			return line, nil
		}
		switch s := seg.(type) {
		case string:
			k, val := lookup(n, s, 0)
			if k == nil {
				return line, nil
			}
			line, n = k.Line, val
		case int:
			if n.Kind != yaml.SequenceNode || s < 0 || s >= len(n.Content) {
				return line, nil
			}
			n = n.Content[s]
			line = n.Line
		}
	}
	return line, n
}

// walker checks the node tree against the Go types before decoding. It is
// what makes unknown keys an error everywhere: yaml.v3's KnownFields applies
// only to the Decoder it is set on and is lost inside every UnmarshalYAML
// (Node.Decode starts a fresh decoder), and our sections need UnmarshalYAML
// for their defaults. It also rejects duplicate keys and wrong shapes with
// the key's path, and records where each value node sits so that decoding
// errors can name the key too.
type walker struct {
	file    string
	errs    []error
	paths   map[*yaml.Node]keyPath
	lines   map[int]keyPath // line -> path of a value starting there, scalars preferred
	scalar  map[int]bool
	seen    map[walkKey]bool
	decoded map[walkKey]bool // nodes decodeCheck has tried, once per type
}

type walkKey struct {
	n *yaml.Node
	t reflect.Type
}

// maxWalkErrors bounds the report for a badly broken file.
const maxWalkErrors = 20

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// v2UnmarshalerType is the yaml.v2 form of UnmarshalYAML, which yaml.v3
// still honours. prometheus/common's HTTP client settings (tls_config,
// oauth2, proxy_url, min_version...) implement it and check their values in
// it.
var v2UnmarshalerType = reflect.TypeFor[interface {
	UnmarshalYAML(unmarshal func(any) error) error
}]()

func newWalker(file string) *walker {
	return &walker{
		file:    file,
		paths:   map[*yaml.Node]keyPath{},
		lines:   map[int]keyPath{},
		scalar:  map[int]bool{},
		seen:    map[walkKey]bool{},
		decoded: map[walkKey]bool{},
	}
}

func (w *walker) errorf(line int, p keyPath, format string, args ...any) {
	if len(w.errs) < maxWalkErrors {
		w.errs = append(w.errs, posErrorf(w.file, line, p, format, args...))
	}
}

// walk checks n against type t at path p.
func (w *walker) walk(n *yaml.Node, t reflect.Type, p keyPath) {
	n = resolve(n)
	if n == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// Shared anchors are checked once per type: an alias bomb would
	// otherwise cost exponential time here, and an error in an anchor
	// would be reported at every alias.
	if w.seen[walkKey{n, t}] {
		return
	}
	w.seen[walkKey{n, t}] = true
	w.record(n, p)
	if isNull(n) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode && w.scalarForm(n, t) {
			return // a struct written as a scalar, such as proxy_url
		}
		w.walkStruct(n, t, p)
	case reflect.Map:
		w.walkMap(n, t, p)
	case reflect.Slice:
		if reflect.PointerTo(t).Implements(unmarshalerType) {
			// A leaf such as URLList checks its own shape; its items are
			// recorded so that its errors can name them.
			if n.Kind == yaml.SequenceNode {
				for i, item := range n.Content {
					w.record(resolve(item), p.with(i))
				}
			}
			return
		}
		if n.Kind != yaml.SequenceNode {
			w.errorf(n.Line, p, "must be a list, not %s", describe(n))
			return
		}
		for i, item := range n.Content {
			w.walk(item, t.Elem(), p.with(i))
		}
	}
	// Anything else is a leaf that yaml.v3 or our unmarshalers check; an
	// interface (management.auth) accepts anything.
}

func (w *walker) record(n *yaml.Node, p keyPath) {
	if n == nil {
		return
	}
	if _, ok := w.paths[n]; !ok {
		w.paths[n] = p
	}
	isScalar := n.Kind == yaml.ScalarNode
	if _, ok := w.lines[n.Line]; !ok || (isScalar && !w.scalar[n.Line]) {
		w.lines[n.Line] = p
		w.scalar[n.Line] = isScalar
	}
}

func (w *walker) walkStruct(n *yaml.Node, t reflect.Type, p keyPath) {
	if n.Kind != yaml.MappingNode {
		w.errorf(n.Line, p, "must be a mapping of keys, not %s", describe(n))
		return
	}
	fields, rest := yamlFields(t)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			for _, m := range mergeSources(v) {
				w.walk(m, t, p)
			}
			continue
		}
		if k.Kind != yaml.ScalarNode {
			w.errorf(k.Line, p, "keys must be plain names, not %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.errorf(k.Line, p.with(k.Value), "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		ft, ok := fields[k.Value]
		if !ok && rest != nil {
			ft, ok = rest, true // a key of an inlined map (http_headers)
		}
		if !ok {
			if len(p) == 0 {
				w.errorf(k.Line, nil, "unknown key %q", k.Value)
			} else {
				w.errorf(k.Line, nil, "unknown key %q in %s", k.Value, p)
			}
			continue
		}
		before := len(w.errs)
		w.walk(v, ft, p.with(k.Value))
		if len(w.errs) == before && reflect.PointerTo(derefType(ft)).Implements(v2UnmarshalerType) {
			w.decodeCheck(v, derefType(ft), k.Line, p.with(k.Value))
		}
	}
}

// scalarForm reports whether struct t takes scalar n through its own
// UnmarshalYAML, as proxy_url's URL does. A value it refuses for what it
// says rather than for its type (a URL that does not parse) counts: the
// caller's decodeCheck reports that refusal.
func (w *walker) scalarForm(n *yaml.Node, t reflect.Type) bool {
	if !reflect.PointerTo(t).Implements(v2UnmarshalerType) {
		return false
	}
	var te *yaml.TypeError
	err := n.Decode(reflect.New(t).Interface())
	return !errors.As(err, &te)
}

// decodeCheck decodes n into a new value of t to run the checks that
// prometheus/common's types make inside their UnmarshalYAML (tls_config's
// "at most one of ca, ca_file & ca_ref", an unknown min_version, a bad
// proxy_url), so that they are reported with the key and line: from the
// full decode they would come without either. Type errors are left to the
// full decode, which places them. It runs only when nothing inside n was
// refused already, so that an error is reported once, at the deepest key.
func (w *walker) decodeCheck(n *yaml.Node, t reflect.Type, line int, p keyPath) {
	n = resolve(n)
	if n == nil || isNull(n) || w.decoded[walkKey{n, t}] {
		return
	}
	w.decoded[walkKey{n, t}] = true
	err := n.Decode(reflect.New(t).Interface())
	var te *yaml.TypeError
	if err != nil && !errors.As(err, &te) {
		w.errorf(line, p, "%w", err)
	}
}

// derefType strips pointers from t.
func derefType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func (w *walker) walkMap(n *yaml.Node, t reflect.Type, p keyPath) {
	if n.Kind != yaml.MappingNode {
		w.errorf(n.Line, p, "must be a mapping, not %s", describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
			w.errorf(k.Line, p, "keys must be plain names, not %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			w.errorf(k.Line, p.with(k.Value), "duplicate key (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		w.walk(v, t.Elem(), p.with(k.Value))
	}
}

// yamlFields maps the YAML key of each decoded field of struct t to the
// field's type, with the fields of structs marked ",inline" (such as
// prometheus/common's HTTPClientConfig in push_gateway and jobs) merged in,
// as yaml.v3 decodes them. rest is the element type of a map marked
// ",inline", which takes every other key; nil when t has none.
func yamlFields(t reflect.Type) (fields map[string]reflect.Type, rest reflect.Type) {
	fields = map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if isInline(opts) {
			switch ft := derefType(f.Type); ft.Kind() {
			case reflect.Struct:
				inner, innerRest := yamlFields(ft)
				maps.Copy(fields, inner)
				if innerRest != nil {
					rest = innerRest
				}
			case reflect.Map:
				rest = ft.Elem()
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's own default
		}
		fields[name] = f.Type
	}
	return fields, rest
}

// describe names a node's kind for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	default:
		return "this node"
	}
}

var (
	typeErrorLine = regexp.MustCompile(`^line (\d+): (.*)$`)
	syntaxErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// decodeError rewrites an error from yaml.v3's decoding into this package's
// "file:line: key: message" form.
func (w *walker) decodeError(err error) error {
	var ve *valueError
	if errors.As(err, &ve) {
		return posErrorf(w.file, ve.node.Line, w.paths[ve.node], "%w", ve.err)
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, msg := range te.Errors {
			m := typeErrorLine.FindStringSubmatch(msg)
			if m == nil {
				errs = append(errs, posErrorf(w.file, 0, nil, "%s", msg))
				continue
			}
			line, _ := strconv.Atoi(m[1])
			errs = append(errs, posErrorf(w.file, line, w.lines[line], "%s", m[2]))
		}
		return errors.Join(errs...)
	}
	return syntaxError(w.file, err)
}

// syntaxError rewrites a yaml.v3 parse error ("yaml: line 3: ...").
func syntaxError(file string, err error) error {
	if m := syntaxErrLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return fmt.Errorf("%s: %s", location(file, line), m[2])
	}
	// yaml.v3 leaves the line out of some errors on the first line.
	return fmt.Errorf("%s: %s", location(file, 1), strings.TrimPrefix(err.Error(), "yaml: "))
}
