package stream

import (
	"errors"
	"fmt"
	"strings"
)

// A JetStream subject is <topic>.<publisher>.<job>.<instance>, each of the
// last three an encoded token. NATS tokens cannot hold ".", "*", ">" or
// white space and cannot be empty, while a job or instance may be anything
// (an instance is often host:port, an IP address, or a URL). The encoding
// keeps letters, digits and "-_~:@=+," as they are and writes every other
// byte as %XX (upper-case hex), like a URL's percent-encoding with "." and
// "%" always escaped. The empty string is the token "%" alone, which no
// escape can produce. So "10.0.0.1:9100" becomes "10%2E0%2E0%2E1:9100",
// and encoding is one-to-one: each value has exactly one token.

// Subject returns the subject of key's group under topic.
func Subject(topic string, key Key) string {
	var b strings.Builder
	b.Grow(len(topic) + len(key.Publisher) + len(key.Job) + len(key.Instance) + 8)
	b.WriteString(topic)
	for _, v := range []string{key.Publisher, key.Job, key.Instance} {
		b.WriteByte('.')
		writeToken(&b, v)
	}
	return b.String()
}

// EncodeToken returns the subject token of one value.
func EncodeToken(v string) string {
	var b strings.Builder
	writeToken(&b, v)
	return b.String()
}

const upperHex = "0123456789ABCDEF"

func writeToken(b *strings.Builder, v string) {
	if v == "" {
		b.WriteByte('%')
		return
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if plainByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(upperHex[c>>4])
		b.WriteByte(upperHex[c&15])
	}
}

func plainByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-_~:@=+,", c) >= 0
}

// errSubject is wrapped by ParseSubject's errors.
var errSubject = errors.New("not a prometheus-streams subject")

// ParseSubject returns the key of a group's subject under a topic of
// topicTokens tokens: the subject must have exactly three more. The
// prefix's own tokens are not compared with the topic, so one that stream
// sourcing rewrote to another of the same length works; but the count is
// what binds the publisher token to a DC's credentials: a DC allowed
// <topic>.dc1.> cannot make a subject whose publisher token is another
// DC's by adding a token.
func ParseSubject(subject string, topicTokens int) (Key, error) {
	tokens := strings.Split(subject, ".")
	if len(tokens) != topicTokens+3 {
		return Key{}, fmt.Errorf("%w: %q has %d tokens, not the topic's %d and three", errSubject, subject, len(tokens), topicTokens)
	}
	var vals [3]string
	for i, tok := range tokens[len(tokens)-3:] {
		v, err := DecodeToken(tok)
		if err != nil {
			return Key{}, fmt.Errorf("%w: %q: %w", errSubject, subject, err)
		}
		vals[i] = v
	}
	return Key{Publisher: vals[0], Job: vals[1], Instance: vals[2]}, nil
}

// subjectPublisher is the publisher token of a delivery's subject under a
// topic of topicTokens tokens. A subject that is not of the form
// <topic>.<publisher>.<job>.<instance> binds the message to a name no
// envelope can hold, so its scrape is refused.
func subjectPublisher(subject string, topicTokens int) string {
	k, err := ParseSubject(subject, topicTokens)
	if err != nil {
		return "(subject " + subject + " not of the form topic.<publisher>.<job>.<instance>)"
	}
	return k.Publisher
}

// DecodeToken reverses EncodeToken. A token EncodeToken cannot have
// produced (a plain byte escaped, lower-case hex, a bad escape) is an
// error, so that one group has one subject.
func DecodeToken(tok string) (string, error) {
	if tok == "%" {
		return "", nil
	}
	if tok == "" {
		return "", errors.New("empty token")
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		if c != '%' {
			if !plainByte(c) {
				return "", fmt.Errorf("byte %q must be escaped", c)
			}
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("escape at %d is cut short", i)
		}
		hi, lo := strings.IndexByte(upperHex, tok[i+1]), strings.IndexByte(upperHex, tok[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("escape %q is not two upper-case hex digits", tok[i:i+3])
		}
		v := byte(hi<<4 | lo)
		if plainByte(v) {
			return "", fmt.Errorf("escape %q stands for a byte written plain", tok[i:i+3])
		}
		b.WriteByte(v)
		i += 2
	}
	return b.String(), nil
}

// Tokens is how many tokens a subject has.
func Tokens(subject string) int { return strings.Count(subject, ".") + 1 }
