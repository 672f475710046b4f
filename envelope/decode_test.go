package envelope

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// noise is n deterministic random bytes.
func noise(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{'e', 'n', 'v'})
	_, _ = r.Read(b)
	return b
}

func TestDecodeMalformed(t *testing.T) {
	valid := mustAppend(t, sample(t))
	bigNoise := noise(4 << 20)
	tests := []struct {
		name    string
		msg     []byte
		wantErr error // nil: any error Reason classifies
	}{
		{"nil", nil, ErrEmpty},
		{"empty", []byte{}, ErrEmpty},
		{"a NUL byte", []byte{0}, ErrBadMagic},
		{"plain text exposition", []byte("# HELP up Was the scrape up.\nup 1\n"), ErrBadMagic},
		{"whitespace only", []byte(" \n\t"), ErrBadMagic},
		{"JSON array", []byte(`[{"job":"x"}]`), ErrBadMagic},
		{"JSON garbage", []byte(`{"job": nope}`), ErrLegacyJSON},
		{"JSON with trailing garbage", []byte(`{"job":"j","instance":"i","time":1,"Scrape":"H4sI"} x`), ErrLegacyJSON},
		{"truncated JSON", legacyMsg(t, legacyScrape{Job: "j", Instance: "i", Timestamp: 1, Scrape: []byte("xyz")})[:20], ErrLegacyJSON},
		{"4 MiB of random noise", bigNoise, ErrBadMagic},
		{"4 MiB of random noise after the magic", append([]byte(Magic+"\x01"), bigNoise...), nil},
		{"magic prefix only", []byte(Magic[:2]), ErrTruncated},
		{"magic without version", []byte(Magic), ErrTruncated},
		{"wrong magic", []byte("\xffXS\x01"), ErrBadMagic},
		{"snappy framing format", []byte("\xff\x06\x00\x00sNaPpY"), ErrBadMagic},
		{"gzip", legacyGzip(t, []byte("up 1\n")), ErrBadMagic},
		{"version 0", withRaw(func(r *raw) { r.version = 0 }), ErrUnsupportedVersion},
		{"version 2", withRaw(func(r *raw) { r.version = 2 }), ErrUnsupportedVersion},
		{"empty job", withRaw(func(r *raw) { r.job = "" }), ErrMissingField},
		{"empty instance", withRaw(func(r *raw) { r.instance = "" }), ErrMissingField},
		{"invalid UTF-8 in job", withRaw(func(r *raw) { r.job = "no\xffde" }), ErrInvalidUTF8},
		{"invalid UTF-8 in publisher", withRaw(func(r *raw) { r.publisher = "\xc0\xaf" }), ErrInvalidUTF8},
		{"invalid UTF-8 in error", withRaw(func(r *raw) { r.errText = "\xff" }), ErrInvalidUTF8},
		{"invalid UTF-8 in content type", withRaw(func(r *raw) { r.contentType = "\xfe" }), ErrInvalidUTF8},
		{"job too long", withRaw(func(r *raw) { r.job = strings.Repeat("j", MaxNameLen+1) }), ErrFieldTooLong},
		{"instance too long", withRaw(func(r *raw) { r.instance = strings.Repeat("i", MaxNameLen+1) }), ErrFieldTooLong},
		{"publisher too long", withRaw(func(r *raw) { r.publisher = strings.Repeat("p", MaxNameLen+1) }), ErrFieldTooLong},
		{"error too long", withRaw(func(r *raw) { r.errText = strings.Repeat("e", MaxErrorLen+1) }), ErrFieldTooLong},
		{"content type too long", withRaw(func(r *raw) { r.contentType = strings.Repeat("c", MaxContentTypeLen+1) }), ErrFieldTooLong},
		{"job length claims 8 EiB", withRaw(func(r *raw) { r.jobLen = u64(1 << 63) }), ErrFieldTooLong},
		{"job length within limit, beyond message", withRaw(func(r *raw) { r.jobLen = u64(MaxNameLen) }), ErrTruncated},
		{"job length varint overflows", []byte(Magic + "\x01" + strings.Repeat("\xff", 10) + "\x01"), ErrFieldTooLong},
		{"duration beyond int64", withRaw(func(r *raw) { r.duration = 1 << 63 }), ErrOutOfRange},
		{"outcome 0", withRaw(func(r *raw) { r.outcome = 0 }), ErrUnknownOutcome},
		{"outcome 3", withRaw(func(r *raw) { r.outcome = 3 }), ErrUnknownOutcome},
		{"codec 0", withRaw(func(r *raw) { r.codec = 0 }), ErrUnknownCodec},
		{"codec 3", withRaw(func(r *raw) { r.codec = 3 }), ErrUnknownCodec},
		{"legacy codec in version 1", withRaw(func(r *raw) { r.codec = byte(CodecLegacyGzip) }), ErrUnknownCodec},
		{"payload length beyond message", withRaw(func(r *raw) { r.payloadLen = u64(uint64(len(r.payload)) + 1) }), ErrTruncated},
		{"payload length claims 16 EiB", withRaw(func(r *raw) { r.payloadLen = u64(1<<64 - 1) }), ErrTruncated},
		{"trailing byte", append(append([]byte{}, valid...), 0), ErrTrailingData},
		{"trailing field", withRaw(func(r *raw) { r.trailing = []byte("\x05extra") }), ErrTrailingData},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Decode(tc.msg)
			if err == nil {
				t.Fatalf("Decode succeeded: %+v", e)
			}
			if e != nil {
				t.Errorf("Decode returned an envelope with error %v", err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Decode error = %v, want %v", err, tc.wantErr)
			}
			if Reason(err) == reasonOther {
				t.Fatalf("error %v has no reason", err)
			}
		})
	}
}

func withRaw(modify func(r *raw)) []byte {
	r := validRaw()
	modify(&r)
	return r.bytes()
}

func TestRawIsValid(t *testing.T) {
	// The malformed cases above each break one field of validRaw; it must be
	// valid itself for them to mean anything.
	if _, err := Decode(validRaw().bytes()); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeTruncatedEverywhere(t *testing.T) {
	tests := []struct {
		name string
		e    func(*Envelope)
	}{
		{"success", func(*Envelope) {}},
		{"failure without payload", func(e *Envelope) { e.Outcome, e.Error, e.Payload = OutcomeFailure, "refused", nil }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := *sample(t)
			tc.e(&e)
			msg := mustAppend(t, &e)
			for i := range len(msg) {
				got, err := Decode(msg[:i])
				want := ErrTruncated
				if i == 0 {
					want = ErrEmpty
				}
				if !errors.Is(err, want) {
					t.Fatalf("Decode of the first %d of %d bytes = %+v, %v; want %v", i, len(msg), got, err, want)
				}
			}
		})
	}
}

func TestDecodePayloadAliasesMessage(t *testing.T) {
	msg := mustAppend(t, sample(t))
	e, err := Decode(msg)
	if err != nil {
		t.Fatal(err)
	}
	if &e.Payload[len(e.Payload)-1] != &msg[len(msg)-1] {
		t.Error("Payload does not alias the message")
	}
	if cap(e.Payload) != len(e.Payload) {
		t.Errorf("Payload capacity %d reaches beyond its length %d", cap(e.Payload), len(e.Payload))
	}
}
