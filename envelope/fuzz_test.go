package envelope

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzLimit is small so that the fuzzer reaches ErrBodyTooLarge easily.
const fuzzLimit = 1 << 16

// FuzzDecode feeds Decode and Body arbitrary messages. Neither may panic,
// every error must carry a reason, Body must never return more than its
// limit, and a decoded version 1 message must encode back to the same
// envelope. Seeds: testdata/fuzz/FuzzDecode and the ones added here.
func FuzzDecode(f *testing.F) {
	f.Add(validRaw().bytes())
	f.Add(withRaw(func(r *raw) { r.outcome, r.errText, r.payload = byte(OutcomeFailure), "timeout", nil }))
	f.Add(legacyMsg(f, legacyScrape{Job: "node", Instance: "h:9100", Timestamp: 1700000000, Scrape: legacyGzip(f, []byte("up 1\n"))}))
	f.Add(withRaw(func(r *raw) { r.codec, r.payload = byte(CodecZstd), newZstd(f).Compress(nil, []byte("up 1\n")) }))
	f.Add([]byte(Magic + "\x02"))
	f.Add([]byte(`{"job":`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		e, err := Decode(msg)
		if err != nil {
			if e != nil {
				t.Fatalf("Decode returned an envelope with error %v", err)
			}
			if Reason(err) == reasonOther {
				t.Fatalf("Decode error without a reason: %v", err)
			}
			return
		}
		body, err := e.Body(nil, fuzzLimit)
		if len(body) > fuzzLimit {
			t.Fatalf("Body returned %d bytes, limit %d", len(body), fuzzLimit)
		}
		if err != nil && Reason(err) == reasonOther {
			t.Fatalf("Body error without a reason: %v", err)
		}
		if e.Legacy {
			return // never encoded
		}
		again, err := Append(nil, e)
		if err != nil {
			t.Fatalf("Append of a decoded envelope: %v", err)
		}
		e2, err := Decode(again)
		if err != nil {
			t.Fatalf("Decode of a re-encoded envelope: %v", err)
		}
		if !equalEnvelope(e, e2) {
			t.Fatalf("re-encoding changed the envelope\n got %+v\nwant %+v", e2, e)
		}
	})
}

// FuzzRoundTrip checks the encoder against the decoder: whatever Append
// accepts, Decode gives back unchanged (Error after Append's sanitizing);
// whatever it refuses, it refuses with a reason.
func FuzzRoundTrip(f *testing.F) {
	f.Add("node", "web1:9100", "poller1", int64(1700000000123456789), int64(12345678), uint8(1), "", textContentType, uint8(1), []byte("\x05\x10up 1\n"))
	f.Add("node", "web1:9100", "", int64(-1), int64(0), uint8(2), "connection refused", "", uint8(1), []byte(nil))
	f.Add("", "i", "p", int64(0), int64(-1), uint8(0), "\xff", "\xfe", uint8(0x80), []byte{0})
	f.Fuzz(func(t *testing.T, job, instance, publisher string, start, dur int64, outcome uint8,
		errText, contentType string, codec uint8, payload []byte,
	) {
		in := Envelope{
			Job: job, Instance: instance, Publisher: publisher,
			ScrapeStart: time.Unix(0, start), ScrapeDuration: time.Duration(dur),
			Outcome: Outcome(outcome), Error: errText, ContentType: contentType,
			Codec: Codec(codec), Payload: payload,
		}
		dst := []byte("x")
		msg, err := Append(dst, &in)
		if err != nil {
			if Reason(err) == reasonOther || string(msg) != "x" {
				t.Fatalf("Append error %v without a reason, or dst changed to %q", err, msg)
			}
			return
		}
		got, err := Decode(msg[1:])
		if err != nil {
			t.Fatalf("Decode of Append's output: %v", err)
		}
		in.Error = errorText(in.Error)
		if !equalEnvelope(got, &in) {
			t.Fatalf("round trip\n got %+v\nwant %+v", got, &in)
		}
	})
}

// TestFuzzSeeds keeps the committed corpus meaningful: if the format changes,
// the seeds that should decode must be regenerated.
func TestFuzzSeeds(t *testing.T) {
	tests := []struct {
		file    string
		wantErr error
	}{
		{"v1_success", nil},
		{"v1_failure_no_payload", nil},
		{"v1_protobuf", nil},
		{"legacy_1_0", nil},
		{"legacy_gzip_bomb", nil},
		{"v1_snappy_claims_1TiB", nil},
		{"v1_corrupt_body", nil},
		{"v1_zstd", nil},
		{"v1_zstd_claims_1TiB", nil},
		{"v1_unknown_version", ErrUnsupportedVersion},
		{"v1_trailing_data", ErrTrailingData},
		{"v1_truncated", ErrTruncated},
		{"plain_text", ErrBadMagic},
		{"json_garbage", ErrLegacyJSON},
		{"nul", ErrBadMagic},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			msg := readSeed(t, filepath.Join("testdata", "fuzz", "FuzzDecode", tc.file))
			if _, err := Decode(msg); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Decode error = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// readSeed reads a one-value corpus file: "go test fuzz v1", then []byte("...").
func readSeed(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	header, value, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	quoted, ok := strings.CutPrefix(value, "[]byte(")
	if header != "go test fuzz v1" || !ok || !strings.HasSuffix(quoted, ")") {
		t.Fatalf("%s is not a one-value corpus file", path)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(quoted, ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}
