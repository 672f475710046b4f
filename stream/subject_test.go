package stream

import (
	"strings"
	"testing"
	"unicode"
)

func TestSubjectTokens(t *testing.T) {
	cases := []struct{ in, want string }{
		{"node", "node"},
		{"10.0.0.1:9100", "10%2E0%2E0%2E1:9100"},
		{"", "%"},
		{"a b*c>d", "a%20b%2Ac%3Ed"},
		{"100%", "100%25"},
		{"http://x/metrics?a=1", "http:%2F%2Fx%2Fmetrics%3Fa=1"},
		{"ünï", "%C3%BCn%C3%AF"},
		{"$SYS", "%24SYS"},
	}
	for _, c := range cases {
		if got := EncodeToken(c.in); got != c.want {
			t.Errorf("EncodeToken(%q) = %q, want %q", c.in, got, c.want)
		}
		back, err := DecodeToken(c.want)
		if err != nil || back != c.in {
			t.Errorf("DecodeToken(%q) = %q, %v; want %q", c.want, back, err, c.in)
		}
	}
}

func TestSubjectRoundTrip(t *testing.T) {
	k := Key{Publisher: "dc1.eu", Job: "node exporter", Instance: "[::1]:9100"}
	s := Subject("prometheus.scrapes", k)
	if want := "prometheus.scrapes.dc1%2Eeu.node%20exporter.%5B::1%5D:9100"; s != want {
		t.Fatalf("Subject = %q, want %q", s, want)
	}
	got, err := ParseSubject(s, 2)
	if err != nil || got != k {
		t.Fatalf("ParseSubject(%q) = %+v, %v; want %+v", s, got, err, k)
	}
	// A prefix rewritten to another of the same length (stream sourcing
	// with a subject transform) reads the same.
	if got, err := ParseSubject("central.metrics"+s[len("prometheus.scrapes"):], 2); err != nil || got != k {
		t.Fatalf("ParseSubject with another prefix = %+v, %v", got, err)
	}
	// A DC allowed prometheus.dc1.> cannot pose as dc2 with a token more.
	if got, err := ParseSubject("prometheus.dc1.dc2.node.x", 1); err == nil {
		t.Fatalf("a subject with a token too many read as %+v", got)
	}
}

func TestParseSubjectRefusesWhatEncodingCannotMake(t *testing.T) {
	for _, s := range []string{
		"p.a.b",     // too few tokens
		"p.a.b.",    // empty token
		"p.a.b.%2e", // lower-case hex
		"p.a.b.%41", // "A" escaped though written plain
		"p.a.b.%4",  // cut short
		"p.a.b.x%",  // cut short
		"p.a.b.%ZZ", // not hex
		"p.a.b.x/y", // "/" must be escaped
	} {
		if k, err := ParseSubject(s, 1); err == nil {
			t.Errorf("ParseSubject(%q) = %+v, want an error", s, k)
		}
	}
}

// FuzzToken checks that every value encodes to a valid NATS token that
// decodes back to it.
func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "a.b", "%", "%25", " \t\n*>", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tok := EncodeToken(v)
		if tok == "" || strings.ContainsAny(tok, ".*>") || strings.ContainsFunc(tok, unicode.IsSpace) {
			t.Fatalf("EncodeToken(%q) = %q is no valid NATS token", v, tok)
		}
		back, err := DecodeToken(tok)
		if err != nil || back != v {
			t.Fatalf("DecodeToken(EncodeToken(%q)) = %q, %v", v, back, err)
		}
	})
}
