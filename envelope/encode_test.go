package envelope

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	body := nodeExporter(t)
	full := sample(t)
	tests := []struct {
		name   string
		modify func(e *Envelope)
	}{
		{"node exporter success", func(*Envelope) {}},
		{"protobuf content type", func(e *Envelope) { e.ContentType = protoContentType }},
		{"failure with error and empty payload", func(e *Envelope) {
			e.Outcome, e.Error, e.Payload, e.ContentType = OutcomeFailure, `Get "http://web1:9100/metrics": context deadline exceeded`, nil, ""
		}},
		{"failure with empty error", func(e *Envelope) { e.Outcome, e.Payload = OutcomeFailure, nil }},
		{"failure keeping a partial body", func(e *Envelope) {
			e.Outcome, e.Error, e.Payload = OutcomeFailure, "server returned HTTP status 500", Compress(nil, []byte("oops"))
		}},
		{"empty publisher", func(e *Envelope) { e.Publisher = "" }},
		{"fields at their limits", func(e *Envelope) {
			e.Job = strings.Repeat("j", MaxNameLen)
			e.Instance = strings.Repeat("é", MaxNameLen/2)
			e.Publisher = strings.Repeat("p", MaxNameLen)
			e.ContentType = strings.Repeat("c", MaxContentTypeLen)
			e.Error = strings.Repeat("e", MaxErrorLen)
		}},
		{"unicode names", func(e *Envelope) { e.Job, e.Instance = "nœud", "伺服器:9100" }},
		{"zero duration", func(e *Envelope) { e.ScrapeDuration = 0 }},
		{"start before 1970", func(e *Envelope) { e.ScrapeStart = time.Date(1969, 7, 20, 20, 17, 40, 1, time.UTC) }},
		{"start at the Unix epoch", func(e *Envelope) { e.ScrapeStart = time.Unix(0, 0) }},
		{"start in another zone", func(e *Envelope) {
			e.ScrapeStart = time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
		}},
		{"longest duration", func(e *Envelope) { e.ScrapeDuration = time.Duration(1<<63 - 1) }},
		{"empty snappy block", func(e *Envelope) { e.Payload = Compress(nil, nil) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := *full
			tc.modify(&in)
			msg := mustAppend(t, &in)
			got, err := Decode(msg)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !equalEnvelope(got, &in) {
				t.Fatalf("round trip changed the envelope\n got %+v\nwant %+v", got, &in)
			}
			if got.ScrapeStart.Location() != time.UTC {
				t.Errorf("ScrapeStart location = %v, want UTC", got.ScrapeStart.Location())
			}
			out, err := got.Body(nil, len(body))
			if err != nil {
				t.Fatalf("Body: %v", err)
			}
			want, _ := in.Body(nil, len(body))
			if !bytes.Equal(out, want) {
				t.Fatalf("Body returned %d bytes, want %d", len(out), len(want))
			}
		})
	}
	t.Run("node exporter body is intact", func(t *testing.T) {
		got, err := Decode(mustAppend(t, full))
		if err != nil {
			t.Fatal(err)
		}
		out, err := got.Body(nil, len(body))
		if err != nil || !bytes.Equal(out, body) {
			t.Fatalf("Body = %d bytes, %v; want the %d-byte sample", len(out), err, len(body))
		}
	})
}

func TestAppendErrors(t *testing.T) {
	tests := []struct {
		name    string
		modify  func(e *Envelope)
		wantErr error
	}{
		{"empty job", func(e *Envelope) { e.Job = "" }, ErrMissingField},
		{"empty instance", func(e *Envelope) { e.Instance = "" }, ErrMissingField},
		{"job too long", func(e *Envelope) { e.Job = strings.Repeat("j", MaxNameLen+1) }, ErrFieldTooLong},
		{"instance too long", func(e *Envelope) { e.Instance = strings.Repeat("i", MaxNameLen+1) }, ErrFieldTooLong},
		{"publisher too long", func(e *Envelope) { e.Publisher = strings.Repeat("p", MaxNameLen+1) }, ErrFieldTooLong},
		{"content type too long", func(e *Envelope) { e.ContentType = strings.Repeat("c", MaxContentTypeLen+1) }, ErrFieldTooLong},
		{"invalid UTF-8 in job", func(e *Envelope) { e.Job = "no\xffde" }, ErrInvalidUTF8},
		{"invalid UTF-8 in instance", func(e *Envelope) { e.Instance = "\xc3" }, ErrInvalidUTF8},
		{"invalid UTF-8 in publisher", func(e *Envelope) { e.Publisher = "\xed\xa0\x80" }, ErrInvalidUTF8},
		{"invalid UTF-8 in content type", func(e *Envelope) { e.ContentType = "text/\x80" }, ErrInvalidUTF8},
		{"zero scrape start", func(e *Envelope) { e.ScrapeStart = time.Time{} }, ErrMissingField},
		{"scrape start after 2262", func(e *Envelope) { e.ScrapeStart = time.Date(2263, 1, 1, 0, 0, 0, 0, time.UTC) }, ErrOutOfRange},
		{"scrape start before 1678", func(e *Envelope) { e.ScrapeStart = time.Date(1677, 1, 1, 0, 0, 0, 0, time.UTC) }, ErrOutOfRange},
		{"negative duration", func(e *Envelope) { e.ScrapeDuration = -time.Second }, ErrOutOfRange},
		{"zero outcome", func(e *Envelope) { e.Outcome = 0 }, ErrUnknownOutcome},
		{"unknown outcome", func(e *Envelope) { e.Outcome = 3 }, ErrUnknownOutcome},
		{"zero codec", func(e *Envelope) { e.Codec = 0 }, ErrUnknownCodec},
		{"unassigned codec 3", func(e *Envelope) { e.Codec = 3 }, ErrUnknownCodec},
		{"legacy codec", func(e *Envelope) { e.Codec = CodecLegacyGzip }, ErrUnknownCodec},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := *sample(t)
			tc.modify(&e)
			dst := []byte("already here")
			got, err := Append(dst, &e)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Append error = %v, want %v", err, tc.wantErr)
			}
			if string(got) != "already here" {
				t.Errorf("Append changed dst on error: %q", got)
			}
		})
	}
}

func TestAppendErrorText(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"short", "connection refused", "connection refused"},
		{"empty", "", ""},
		{"exactly the limit", strings.Repeat("a", MaxErrorLen), strings.Repeat("a", MaxErrorLen)},
		{"cut at the limit", strings.Repeat("a", MaxErrorLen+10), strings.Repeat("a", MaxErrorLen)},
		// 1365 three-byte runes fill 4095 bytes; the 1366th would straddle the limit.
		{"cut at a rune boundary", strings.Repeat("€", 2000), strings.Repeat("€", MaxErrorLen/3)},
		{"invalid UTF-8 replaced", "bad \xff byte", "bad \uFFFD byte"},
		{"invalid and long", strings.Repeat("a\xff", MaxErrorLen), strings.Repeat("a\uFFFD", MaxErrorLen/4)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := *sample(t)
			e.Outcome, e.Error, e.Payload = OutcomeFailure, tc.in, nil
			got, err := Decode(mustAppend(t, &e))
			if err != nil {
				t.Fatal(err)
			}
			if got.Error != tc.want {
				t.Fatalf("Error = %q (%d bytes), want %q (%d bytes)", got.Error, len(got.Error), tc.want, len(tc.want))
			}
		})
	}
}

func TestAppendReusesBuffer(t *testing.T) {
	e := sample(t)
	dst := make([]byte, 0, 2*len(mustAppend(t, e)))
	allocs := testing.AllocsPerRun(100, func() {
		var err error
		if dst, err = Append(dst[:0], e); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Append into a large enough buffer allocated %v times, want 0", allocs)
	}
	prefix := []byte("prefix")
	out := mustAppendTo(t, prefix, e)
	if !bytes.HasPrefix(out, prefix) || !bytes.Equal(out[len(prefix):], mustAppend(t, e)) {
		t.Error("Append did not append after the existing bytes")
	}
}

func mustAppendTo(tb testing.TB, dst []byte, e *Envelope) []byte {
	tb.Helper()
	out, err := Append(dst, e)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func TestCompressReusesBuffer(t *testing.T) {
	body := nodeExporter(t)
	dst := make([]byte, MaxCompressedLen(len(body)))
	out := Compress(dst, body)
	if &out[0] != &dst[0] {
		t.Error("Compress allocated although dst was large enough")
	}
	if !bytes.Equal(out, Compress(nil, body)) {
		t.Error("Compress into dst differs from Compress(nil)")
	}
	if allocs := testing.AllocsPerRun(20, func() { Compress(dst, body) }); allocs != 0 {
		t.Errorf("Compress allocated %v times, want 0", allocs)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"success", OutcomeSuccess.String(), "success"},
		{"failure", OutcomeFailure.String(), "failure"},
		{"unknown outcome", Outcome(7).String(), "outcome(7)"},
		{"snappy", CodecSnappy.String(), "snappy"},
		{"legacy gzip", CodecLegacyGzip.String(), "legacy-gzip"},
		{"zstd", CodecZstd.String(), "zstd"},
		{"unknown codec", Codec(3).String(), "codec(3)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("String() = %q, want %q", tc.got, tc.want)
			}
		})
	}
}
