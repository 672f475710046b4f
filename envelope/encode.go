package envelope

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang/snappy"
)

// Append encodes e onto dst and returns the extended slice. It grows dst at
// most once, so a caller that reuses dst across scrapes encodes without
// allocating. On error dst is returned unchanged and nothing is written.
//
// Append validates e as Decode would (limits, UTF-8, required fields, known
// outcome and codec) except for Error, which it sanitizes instead: invalid
// UTF-8 is replaced and the text is cut to MaxErrorLen bytes at a rune
// boundary. It does not check that Payload is valid for its codec. e must
// not be nil.
func Append(dst []byte, e *Envelope) ([]byte, error) {
	start, err := e.validate()
	if err != nil {
		return dst, err
	}
	errText := errorText(e.Error)

	dst = slices.Grow(dst, encodedLen(e, errText))
	dst = append(dst, Magic...)
	dst = append(dst, Version)
	dst = appendString(dst, e.Job)
	dst = appendString(dst, e.Instance)
	dst = appendString(dst, e.Publisher)
	dst = binary.BigEndian.AppendUint64(dst, uint64(start))
	dst = binary.AppendUvarint(dst, uint64(e.ScrapeDuration))
	dst = append(dst, byte(e.Outcome))
	dst = appendString(dst, errText)
	dst = appendString(dst, e.ContentType)
	dst = append(dst, byte(e.Codec))
	dst = binary.AppendUvarint(dst, uint64(len(e.Payload)))
	return append(dst, e.Payload...), nil
}

// validate checks every field Append writes as-is and returns the scrape
// start in Unix nanoseconds.
func (e *Envelope) validate() (int64, error) {
	if err := checkName("job", e.Job, true); err != nil {
		return 0, err
	}
	if err := checkName("instance", e.Instance, true); err != nil {
		return 0, err
	}
	if err := checkName("publisher", e.Publisher, false); err != nil {
		return 0, err
	}
	start, err := unixNano(e.ScrapeStart)
	if err != nil {
		return 0, err
	}
	if e.ScrapeDuration < 0 {
		return 0, fmt.Errorf("envelope: scrape duration: %w (%s is negative)", ErrOutOfRange, e.ScrapeDuration)
	}
	if e.Outcome != OutcomeSuccess && e.Outcome != OutcomeFailure {
		return 0, fmt.Errorf("envelope: outcome: %w (%d)", ErrUnknownOutcome, e.Outcome)
	}
	if err := checkString("content type", e.ContentType, MaxContentTypeLen); err != nil {
		return 0, err
	}
	if e.Codec != CodecSnappy && e.Codec != CodecZstd {
		return 0, fmt.Errorf("envelope: codec: %w (%s cannot be encoded)", ErrUnknownCodec, e.Codec)
	}
	return start, nil
}

// checkName applies the rules shared by job, instance and publisher, in
// both directions: the decoders call it too.
func checkName(field, s string, required bool) error {
	if required && s == "" {
		return fmt.Errorf("envelope: %s: %w", field, ErrMissingField)
	}
	return checkString(field, s, MaxNameLen)
}

func checkString(field, s string, limit int) error {
	if len(s) > limit {
		return fmt.Errorf("envelope: %s: %w (%d bytes, limit %d)", field, ErrFieldTooLong, len(s), limit)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("envelope: %s: %w", field, ErrInvalidUTF8)
	}
	return nil
}

// unixNano converts t to the wire's int64 nanoseconds. time.UnixNano is
// undefined outside that range, so the result is converted back and compared
// rather than trusted.
func unixNano(t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, fmt.Errorf("envelope: scrape start: %w", ErrMissingField)
	}
	n := t.UnixNano()
	if !time.Unix(0, n).Equal(t) {
		return 0, fmt.Errorf("envelope: scrape start: %w (%s is outside int64 Unix nanoseconds)", ErrOutOfRange, t)
	}
	return n, nil
}

// errorText makes s fit the error field: valid UTF-8, at most MaxErrorLen
// bytes. It allocates only when s is not valid UTF-8.
func errorText(s string) string {
	if !utf8.ValidString(s) {
		if len(s) > MaxErrorLen {
			s = s[:MaxErrorLen] // bound the copy ToValidUTF8 makes
		}
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= MaxErrorLen {
		return s
	}
	i := MaxErrorLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// encodedLen is the exact size Append writes, so that it grows dst once.
func encodedLen(e *Envelope, errText string) int {
	n := len(Magic) + 1 + 8 + uvarintLen(uint64(e.ScrapeDuration)) + 1 + 1
	for _, s := range [...]string{e.Job, e.Instance, e.Publisher, errText, e.ContentType} {
		n += uvarintLen(uint64(len(s))) + len(s)
	}
	return n + uvarintLen(uint64(len(e.Payload))) + len(e.Payload)
}

func uvarintLen(x uint64) int {
	n := 1
	for ; x >= 0x80; x >>= 7 {
		n++
	}
	return n
}

// MaxCompressedLen is the capacity Compress needs in dst to avoid allocating
// for a body of n bytes; it is negative if n is too large for snappy's block
// format.
func MaxCompressedLen(n int) int {
	return snappy.MaxEncodedLen(n)
}

// Compress snappy-encodes body (block format) and returns the block. It writes
// into dst when cap(dst) >= MaxCompressedLen(len(body)) and allocates
// otherwise; dst and body must not overlap. Like snappy.Encode it panics if
// body is too large for the block format (about 3.6 GiB); scrape bodies are
// capped long before that.
func Compress(dst, body []byte) []byte {
	if n := snappy.MaxEncodedLen(len(body)); n >= 0 && cap(dst) >= n {
		dst = dst[:n]
	} else {
		dst = nil
	}
	return snappy.Encode(dst, body)
}
