package envelope

import "errors"

// Sentinel errors. Every error Append, Decode and Body return wraps exactly
// one of them (match with errors.Is) together with what failed.
var (
	// ErrEmpty: the message has no bytes.
	ErrEmpty = errors.New("empty message")
	// ErrBadMagic: the message is neither this format nor 1.0 JSON.
	ErrBadMagic = errors.New("bad magic")
	// ErrUnsupportedVersion: the magic matches but the version is not Version,
	// typically a message from a newer poller.
	ErrUnsupportedVersion = errors.New("unsupported version")
	// ErrTruncated: the message ends before a field does.
	ErrTruncated = errors.New("truncated")
	// ErrTrailingData: bytes follow the payload.
	ErrTrailingData = errors.New("trailing data")
	// ErrFieldTooLong: a string field exceeds its limit.
	ErrFieldTooLong = errors.New("field too long")
	// ErrInvalidUTF8: a string field is not valid UTF-8.
	ErrInvalidUTF8 = errors.New("invalid UTF-8")
	// ErrMissingField: a required field is empty or absent.
	ErrMissingField = errors.New("missing field")
	// ErrOutOfRange: a time or duration cannot be represented.
	ErrOutOfRange = errors.New("out of range")
	// ErrUnknownOutcome: the outcome is not one of the Outcome constants.
	ErrUnknownOutcome = errors.New("unknown outcome")
	// ErrUnknownCodec: the codec is not one this side can handle.
	ErrUnknownCodec = errors.New("unknown codec")
	// ErrBodyTooLarge: the decompressed body would exceed the caller's limit.
	ErrBodyTooLarge = errors.New("body too large")
	// ErrCorruptBody: the compressed body does not decompress.
	ErrCorruptBody = errors.New("corrupt body")
	// ErrLegacyJSON: the message looks like 1.0 JSON but does not parse as it.
	ErrLegacyJSON = errors.New("malformed legacy JSON")
)

// reasonOther is the label for an error that wraps none of our sentinels.
const reasonOther = "other"

type reason struct {
	err   error
	label string
}

// reasonTable is a function rather than a package variable so that the
// mapping cannot be changed at run time; it returns an array, which costs no
// allocation.
func reasonTable() [14]reason {
	return [...]reason{
		{ErrEmpty, "empty"},
		{ErrLegacyJSON, "legacy_json"},
		{ErrBadMagic, "bad_magic"},
		{ErrUnsupportedVersion, "unsupported_version"},
		{ErrTruncated, "truncated"},
		{ErrTrailingData, "trailing_data"},
		{ErrFieldTooLong, "field_too_long"},
		{ErrInvalidUTF8, "invalid_utf8"},
		{ErrMissingField, "missing_field"},
		{ErrOutOfRange, "out_of_range"},
		{ErrUnknownOutcome, "unknown_outcome"},
		{ErrUnknownCodec, "unknown_codec"},
		{ErrBodyTooLarge, "body_too_large"},
		{ErrCorruptBody, "corrupt_body"},
	}
}

// Reason maps an error from Append, Decode or Body to a short label for a
// metric, from the fixed set Reasons returns: a raw error string would make
// an unbounded label. An error that wraps none of the sentinels is "other";
// Reason(nil) is "".
func Reason(err error) string {
	if err == nil {
		return ""
	}
	for _, r := range reasonTable() {
		if errors.Is(err, r.err) {
			return r.label
		}
	}
	return reasonOther
}

// Reasons lists every label Reason can return, so that a caller can create
// its counters at zero. The caller owns the returned slice.
func Reasons() []string {
	table := reasonTable()
	labels := make([]string, 0, len(table)+1)
	for _, r := range table {
		labels = append(labels, r.label)
	}
	return append(labels, reasonOther)
}
