package envelope

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// Decode parses msg, in this format or 1.0's JSON (which it reports with
// Legacy set). It does not decompress: call Body for that.
//
// msg may come from anyone who can publish to the stream. Decode checks every
// length against the message and its limit before using it, allocates only
// the header strings (each bounded by its limit) and the Envelope, and is
// strict: bytes after the payload are an error. Payload aliases msg. Every
// error wraps one of the package's sentinels; the Envelope is nil on error.
func Decode(msg []byte) (*Envelope, error) {
	if len(msg) == 0 {
		return nil, fmt.Errorf("envelope: %w", ErrEmpty)
	}
	if isLegacy(msg) {
		return decodeLegacy(msg)
	}
	if n := min(len(msg), len(Magic)); string(msg[:n]) != Magic[:n] {
		return nil, fmt.Errorf("envelope: %w (first bytes %q)", ErrBadMagic, msg[:n])
	}
	if len(msg) < len(Magic) {
		return nil, fmt.Errorf("envelope: magic: %w (%d bytes)", ErrTruncated, len(msg))
	}
	d := decoder{msg: msg, off: len(Magic)}
	v, err := d.byte("version")
	if err != nil {
		return nil, err
	}
	if v != Version {
		return nil, fmt.Errorf("envelope: %w %d (this decoder reads %d)", ErrUnsupportedVersion, v, Version)
	}
	return d.envelope()
}

// isLegacy reports whether msg starts as a JSON object would. Magic's first
// byte is neither '{' nor JSON whitespace, so the two never collide.
func isLegacy(msg []byte) bool {
	for _, c := range msg {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{':
			return true
		}
		return false
	}
	return false
}

// decoder reads the version 1 fields in order. msg[off:] is still unread;
// off appears in errors to help whoever looks at a bad message.
type decoder struct {
	msg []byte
	off int
}

func (d *decoder) envelope() (*Envelope, error) {
	var e Envelope
	var err error
	if e.Job, err = d.name("job", true); err != nil {
		return nil, err
	}
	if e.Instance, err = d.name("instance", true); err != nil {
		return nil, err
	}
	if e.Publisher, err = d.name("publisher", false); err != nil {
		return nil, err
	}
	if e.ScrapeStart, err = d.time("scrape start"); err != nil {
		return nil, err
	}
	if e.ScrapeDuration, err = d.duration("scrape duration"); err != nil {
		return nil, err
	}
	if e.Outcome, err = d.outcome(); err != nil {
		return nil, err
	}
	if e.Error, err = d.string("error", MaxErrorLen); err != nil {
		return nil, err
	}
	if e.ContentType, err = d.string("content type", MaxContentTypeLen); err != nil {
		return nil, err
	}
	if e.Codec, err = d.codec(); err != nil {
		return nil, err
	}
	if e.Payload, err = d.payload(); err != nil {
		return nil, err
	}
	return &e, nil
}

func (d *decoder) truncated(field string, need int) error {
	return fmt.Errorf("envelope: %s: %w (need %d bytes at offset %d, %d left)", field, ErrTruncated, need, d.off, len(d.msg)-d.off)
}

func (d *decoder) byte(field string) (byte, error) {
	if d.off >= len(d.msg) {
		return 0, d.truncated(field, 1)
	}
	d.off++
	return d.msg[d.off-1], nil
}

// uvarint reads a varint; one that overflows 64 bits is reported as
// overflow, the sentinel fitting the caller's field.
func (d *decoder) uvarint(field string, overflow error) (uint64, error) {
	v, n := binary.Uvarint(d.msg[d.off:])
	if n == 0 {
		return 0, d.truncated(field, len(d.msg)-d.off+1)
	}
	if n < 0 {
		return 0, fmt.Errorf("envelope: %s: %w (varint overflows 64 bits at offset %d)", field, overflow, d.off)
	}
	d.off += n
	return v, nil
}

// bytes reads a length-prefixed field, checking the length against limit
// before the message, and both before slicing.
func (d *decoder) bytes(field string, limit int) ([]byte, error) {
	n, err := d.uvarint(field, ErrFieldTooLong)
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("envelope: %s: %w (%d bytes, limit %d)", field, ErrFieldTooLong, n, limit)
	}
	if n > uint64(len(d.msg)-d.off) {
		return nil, d.truncated(field, int(n))
	}
	b := d.msg[d.off : d.off+int(n)]
	d.off += int(n)
	return b, nil
}

// string and name apply the encoder's rules (checkString, checkName) to
// what they read, so both directions enforce the same limits.
func (d *decoder) string(field string, limit int) (string, error) {
	b, err := d.bytes(field, limit)
	if err != nil {
		return "", err
	}
	s := string(b)
	if err := checkString(field, s, limit); err != nil {
		return "", err
	}
	return s, nil
}

func (d *decoder) name(field string, required bool) (string, error) {
	b, err := d.bytes(field, MaxNameLen)
	if err != nil {
		return "", err
	}
	s := string(b)
	if err := checkName(field, s, required); err != nil {
		return "", err
	}
	return s, nil
}

func (d *decoder) time(field string) (time.Time, error) {
	if len(d.msg)-d.off < 8 {
		return time.Time{}, d.truncated(field, 8)
	}
	n := int64(binary.BigEndian.Uint64(d.msg[d.off:]))
	d.off += 8
	return time.Unix(0, n).UTC(), nil
}

func (d *decoder) duration(field string) (time.Duration, error) {
	v, err := d.uvarint(field, ErrOutOfRange)
	if err != nil {
		return 0, err
	}
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("envelope: %s: %w (%d ns)", field, ErrOutOfRange, v)
	}
	return time.Duration(v), nil
}

func (d *decoder) outcome() (Outcome, error) {
	b, err := d.byte("outcome")
	if err != nil {
		return 0, err
	}
	if o := Outcome(b); o == OutcomeSuccess || o == OutcomeFailure {
		return o, nil
	}
	return 0, fmt.Errorf("envelope: outcome: %w (%d)", ErrUnknownOutcome, b)
}

// codec accepts only what version 1 encoders write: CodecLegacyGzip belongs to
// the 1.0 JSON format and is refused here.
func (d *decoder) codec() (Codec, error) {
	b, err := d.byte("codec")
	if err != nil {
		return 0, err
	}
	if c := Codec(b); c == CodecSnappy || c == CodecZstd {
		return c, nil
	}
	return 0, fmt.Errorf("envelope: codec: %w (%d)", ErrUnknownCodec, b)
}

// payload reads the length-prefixed body, which must end the message exactly:
// the length lets Decode catch a truncated message without decompressing,
// and the exact end keeps version 1 strict about trailing fields.
func (d *decoder) payload() ([]byte, error) {
	n, err := d.uvarint("payload", ErrTruncated)
	if err != nil {
		return nil, err
	}
	left := uint64(len(d.msg) - d.off)
	switch {
	case n > left:
		return nil, fmt.Errorf("envelope: payload: %w (%d bytes stated, %d left)", ErrTruncated, n, left)
	case n < left:
		return nil, fmt.Errorf("envelope: payload: %w (%d bytes after it)", ErrTrailingData, left-n)
	case n == 0:
		return nil, nil
	}
	// The capacity is capped so that appending to Payload cannot overwrite
	// whatever follows in the caller's buffer.
	return d.msg[d.off:len(d.msg):len(d.msg)], nil
}
