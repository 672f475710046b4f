package config

import (
	"errors"
	"fmt"
	"slices"
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

// decodeError places an error of the strict decoding of root, whose
// messages yaml.v3 gives with at most a line, in this package's
// "file:line: key.path: message" form. yaml.v3 itself reports unknown and
// duplicate keys and wrong types, as *yaml.TypeError lines ("line 12: field
// x not found in type config.plain"); each is prefixed with the key path
// written on its line. Any other error aborted the decoding without a
// position: a bad value refused by an UnmarshalYAML, ours (Duration,
// URLList...) or prometheus/common's (tls_config, proxy_url...); locate
// finds its key.
func decodeError(file string, root *yaml.Node, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		line, p := locate(root, err.Error())
		return posErrorf(file, line, p, "%w", err)
	}
	lines := map[int]lineKey{}
	indexLines(lines, root, nil)
	seen := map[string]bool{}
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		// An anchor merged with << is decoded, and its errors reported,
		// once where it is written and once more for every merge.
		if seen[msg] {
			continue
		}
		seen[msg] = true
		line, text := splitLine(msg)
		errs = append(errs, posErrorf(file, line, lines[line].path, "%s", text))
	}
	return errors.Join(errs...)
}

// lineKey is the key path written on one line of the file.
type lineKey struct {
	path keyPath
	// scalar is set when path comes from scalars (keys and values), which
	// name a line better than the mapping or list that starts on it.
	scalar bool
}

// indexLines records in lines the key path of every line of the tree at n,
// whose path is p. yaml.v3's type errors give only a line, and this index
// is the least that turns it into a key path. A line that holds several
// keys ({a: 1, b: x}) gets the path they share, the enclosing mapping:
// naming one of them could name the wrong one. Aliases are not followed: an
// anchor's errors are reported where it is written.
func indexLines(lines map[int]lineKey, n *yaml.Node, p keyPath) {
	isScalar := n.Kind == yaml.ScalarNode
	switch old, ok := lines[n.Line]; {
	case !ok || isScalar && !old.scalar:
		lines[n.Line] = lineKey{path: p, scalar: isScalar}
	case isScalar == old.scalar:
		lines[n.Line] = lineKey{path: commonPrefix(old.path, p), scalar: isScalar}
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			kp := keyAt(p, n.Content[i])
			indexLines(lines, n.Content[i], kp)
			indexLines(lines, n.Content[i+1], kp)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			indexLines(lines, item, p.with(i))
		}
	}
}

// keyAt returns the path of key k in the mapping at p. A merge key (<<)
// and a key that is no scalar add nothing: what a merge brings in takes
// effect at p, and a list or mapping written as a key has no name.
func keyAt(p keyPath, k *yaml.Node) keyPath {
	if k.Kind != yaml.ScalarNode || k.ShortTag() == "!!merge" {
		return p
	}
	return p.with(k.Value)
}

// commonPrefix returns the segments a and b start with.
func commonPrefix(a, b keyPath) keyPath {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return a[:n:n]
}

// locate finds the key that makes decoding fail with msg, an error that
// yaml.v3 returns without a line because an UnmarshalYAML refused a value.
// Starting from root, it keeps only one child of the current mapping or
// list (the rest of the file pruned) and descends into the first child
// that alone still fails with msg. It stops at a scalar, at a node that
// fails even when emptied (a list where a duration goes: the node itself is
// wrong, not an item), and at a node whose children fail only together
// (tls_config's ca and ca_file). It runs only for a file that failed.
func locate(root *yaml.Node, msg string) (line int, p keyPath) {
	// fails reports whether the file, with the node being narrowed
	// replaced by n, still fails with msg.
	fails := func(n *yaml.Node) bool {
		err := n.Decode(&Config{})
		return err != nil && err.Error() == msg
	}
	n, line := root, root.Line
	// An alias is followed, so that a value merged in with << is placed
	// under the key it merges into, but a node is entered once: an anchor
	// may be merged into itself.
	seen := map[*yaml.Node]bool{}
	for {
		n = resolve(n)
		if n == nil || seen[n] {
			return line, p
		}
		seen[n] = true
		step := 1 // a list holds items
		if n.Kind == yaml.MappingNode {
			step = 2 // a mapping holds keys, each with its value
		}
		if (n.Kind != yaml.MappingNode && n.Kind != yaml.SequenceNode) || fails(withContent(n)) {
			return line, p
		}
		i, inner := 0, fails
		for ; i+step <= len(n.Content); i += step {
			inner = keepOnly(fails, n, n.Content[i:i+step])
			if inner(n.Content[i+step-1]) {
				break
			}
		}
		if i+step > len(n.Content) {
			return line, p
		}
		line = n.Content[i].Line
		if step == 2 {
			p = keyAt(p, n.Content[i])
		} else {
			p = p.with(i)
		}
		n, fails = n.Content[i+step-1], inner
	}
}

// keepOnly returns fails for a copy of parent that keeps only the child
// made of kept (a key and its value, or an item), with that child's last
// node replaced by the node fails is given.
func keepOnly(fails func(*yaml.Node) bool, parent *yaml.Node, kept []*yaml.Node) func(*yaml.Node) bool {
	return func(sub *yaml.Node) bool {
		c := append(slices.Clone(kept[:len(kept)-1]), sub)
		return fails(withContent(parent, c...))
	}
}

// withContent returns a copy of n with content as its children.
func withContent(n *yaml.Node, content ...*yaml.Node) *yaml.Node {
	c := *n
	c.Content = content
	return &c
}

// splitLine splits yaml.v3's "line 12: message" into 12 and the message;
// a message without a line comes back whole, with line 0.
func splitLine(msg string) (line int, text string) {
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				return n, text
			}
		}
	}
	return 0, msg
}

// syntaxError rewrites a yaml.v3 parse error ("yaml: line 3: ...").
func syntaxError(file string, err error) error {
	line, text := splitLine(strings.TrimPrefix(err.Error(), "yaml: "))
	if line == 0 {
		line = 1 // yaml.v3 leaves the line out of some errors on the first line
	}
	return fmt.Errorf("%s: %s", location(file, line), text)
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
