package envelope

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
)

func TestReason(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"empty", ErrEmpty, "empty"},
		{"legacy JSON", fmt.Errorf("envelope: %w: %w", ErrLegacyJSON, io.ErrUnexpectedEOF), "legacy_json"},
		{"bad magic", ErrBadMagic, "bad_magic"},
		{"unsupported version", ErrUnsupportedVersion, "unsupported_version"},
		{"truncated", ErrTruncated, "truncated"},
		{"trailing data", ErrTrailingData, "trailing_data"},
		{"field too long", fmt.Errorf("envelope: job: %w (2000 bytes, limit 1024)", ErrFieldTooLong), "field_too_long"},
		{"invalid UTF-8", ErrInvalidUTF8, "invalid_utf8"},
		{"missing field", ErrMissingField, "missing_field"},
		{"out of range", ErrOutOfRange, "out_of_range"},
		{"unknown outcome", ErrUnknownOutcome, "unknown_outcome"},
		{"unknown codec", ErrUnknownCodec, "unknown_codec"},
		{"body too large", ErrBodyTooLarge, "body_too_large"},
		{"corrupt body", fmt.Errorf("envelope: body: %w: %w", ErrCorruptBody, errors.New("snappy: corrupt input")), "corrupt_body"},
		{"not ours", io.EOF, "other"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Reason(tc.err); got != tc.want {
				t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
			}
			if tc.err != nil && !slices.Contains(Reasons(), tc.want) {
				t.Errorf("Reasons() lacks %q", tc.want)
			}
		})
	}
}

func TestReasonsOfRealErrors(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"bad magic", []byte("up 1\n"), "bad_magic"},
		{"legacy JSON", []byte("{"), "legacy_json"},
		{"version", withRaw(func(r *raw) { r.version = 9 }), "unsupported_version"},
		{"truncated", []byte(Magic), "truncated"},
		{"trailing data", withRaw(func(r *raw) { r.trailing = []byte{1} }), "trailing_data"},
		{"too long", withRaw(func(r *raw) { r.jobLen = u64(MaxNameLen + 1) }), "field_too_long"},
		{"UTF-8", withRaw(func(r *raw) { r.job = "\xff" }), "invalid_utf8"},
		{"missing", withRaw(func(r *raw) { r.instance = "" }), "missing_field"},
		{"range", withRaw(func(r *raw) { r.duration = 1 << 63 }), "out_of_range"},
		{"outcome", withRaw(func(r *raw) { r.outcome = 9 }), "unknown_outcome"},
		{"codec", withRaw(func(r *raw) { r.codec = 9 }), "unknown_codec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.msg)
			if got := Reason(err); got != tc.want {
				t.Errorf("Reason(%v) = %q, want %q", err, got, tc.want)
			}
		})
	}
}

func TestReasons(t *testing.T) {
	got := Reasons()
	if len(got) != len(reasonTable())+1 {
		t.Fatalf("Reasons() has %d labels, want %d", len(got), len(reasonTable())+1)
	}
	seen := map[string]bool{}
	for _, l := range got {
		if seen[l] {
			t.Errorf("label %q appears twice", l)
		}
		seen[l] = true
	}
	got[0] = "changed"
	if Reasons()[0] == "changed" {
		t.Error("Reasons() shares its slice between callers")
	}
}
