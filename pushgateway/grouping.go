package pushgateway

import (
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrInvalidGroupingKey is returned (wrapped in an *Error) by Push and
// Delete for a key the Pushgateway would refuse anyway: an empty job, or a
// label name that is not a valid Prometheus label name, is reserved ("__"
// prefix), or is "job".
var ErrInvalidGroupingKey = errors.New("invalid grouping key")

// base64Suffix marks a name whose following path segment is base64url
// encoded; it is the Pushgateway's handler.Base64Suffix, repeated here so
// the client does not import the server.
const base64Suffix = "@base64"

// labelNameRE is the legacy (non-UTF-8) label name syntax, the one the
// Pushgateway validates against unless started with --push.enable-utf8-names.
var labelNameRE = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// Label is one grouping-key label.
type Label struct{ Name, Value string }

// GroupingKey is job plus further labels in order (instance, publisher...).
// The Pushgateway identifies a group by the whole set, so two keys with the
// same labels in a different order name the same group.
type GroupingKey struct {
	Job    string
	Labels []Label
}

// Path returns the URL path "/metrics/job/<job>/<name>/<value>..." using the
// Pushgateway's "@base64" encoding (name@base64/<base64url without padding>)
// for any value that is empty, contains '/', is "." or "..", or is not plain
// [A-Za-z0-9_.:-]. An empty value is "name@base64/=", because an empty path
// segment would be collapsed by the router.
//
// Path does not validate the key; Push and Delete do.
func (k GroupingKey) Path() string {
	var b strings.Builder
	b.WriteString("/metrics")
	writeSegment(&b, "job", k.Job)
	for _, l := range k.Labels {
		writeSegment(&b, l.Name, l.Value)
	}
	return b.String()
}

// String renders the key for logs as job="x",instance="y".
func (k GroupingKey) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "job=%q", k.Job)
	for _, l := range k.Labels {
		fmt.Fprintf(&b, ",%s=%q", l.Name, l.Value)
	}
	return b.String()
}

// validate catches what the Pushgateway would answer with a 400, so a bad
// key fails fast and is never mistaken for a retryable network error.
func (k GroupingKey) validate() error {
	if k.Job == "" {
		return fmt.Errorf("%w: empty job", ErrInvalidGroupingKey)
	}
	for _, l := range k.Labels {
		switch {
		case !labelNameRE.MatchString(l.Name):
			return fmt.Errorf("%w: label name %q", ErrInvalidGroupingKey, l.Name)
		case strings.HasPrefix(l.Name, "__"):
			return fmt.Errorf("%w: reserved label name %q", ErrInvalidGroupingKey, l.Name)
		case l.Name == "job":
			// The Pushgateway silently lets the path's job win over
			// a "job" label, which would hide a caller's mistake.
			return fmt.Errorf("%w: label %q duplicates the job", ErrInvalidGroupingKey, l.Name)
		}
	}
	return nil
}

func writeSegment(b *strings.Builder, name, value string) {
	b.WriteByte('/')
	b.WriteString(name)
	switch {
	case value == "":
		b.WriteString(base64Suffix + "/=")
	case needsBase64(value):
		b.WriteString(base64Suffix + "/")
		b.WriteString(base64.RawURLEncoding.EncodeToString([]byte(value)))
	default:
		b.WriteByte('/')
		b.WriteString(value)
	}
}

// needsBase64 is deliberately conservative: anything outside a small safe
// set is encoded, so no value depends on how a proxy or the router treats
// escapes, dot segments or repeated slashes.
func needsBase64(v string) bool {
	if v == "." || v == ".." {
		return true
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '.', c == ':', c == '-':
		default:
			return true
		}
	}
	return false
}
