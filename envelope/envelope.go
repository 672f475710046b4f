package envelope

import (
	"strconv"
	"time"
)

// Magic opens every message in the binary format. 0xFF is never the first
// byte of UTF-8 text, so it can never start a 1.0 JSON message (which begins
// with '{' or whitespace); the letters that follow tell it apart from the
// snappy framing format (0xFF 0x06 ...).
const Magic = "\xffPS"

// Version is the format version Append writes and the only one Decode reads.
// Any change to the layout, including a new trailing field, takes a new
// version: a version 1 decoder refuses anything else with ErrUnsupportedVersion
// rather than misreading it.
const Version = 1

// Limits on the header fields, enforced by Append and by Decode.
const (
	// MaxNameLen bounds Job, Instance and Publisher, in bytes.
	MaxNameLen = 1024
	// MaxContentTypeLen bounds ContentType, in bytes.
	MaxContentTypeLen = 256
	// MaxErrorLen bounds Error, in bytes. Append truncates a longer Error at a
	// rune boundary instead of failing, because it holds arbitrary Go error text.
	MaxErrorLen = 4096
)

// Outcome says whether a scrape succeeded. The zero value is invalid so that
// an envelope nobody filled in is refused rather than published as a success.
type Outcome uint8

// Outcomes, as written on the wire.
const (
	// OutcomeSuccess: the exporter answered 2xx and Payload holds its body.
	OutcomeSuccess Outcome = 1
	// OutcomeFailure: the scrape failed; Error says why and Payload may be empty.
	OutcomeFailure Outcome = 2
)

// String returns "success", "failure", or "outcome(N)" for an unknown value.
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeFailure:
		return "failure"
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// Codec says how Payload is compressed. The zero value is invalid; values
// from 0x80 up never appear on the wire.
type Codec uint8

// Codecs.
const (
	// CodecSnappy is the snappy block format, which states the decoded length
	// first so that Body can refuse a bomb before allocating.
	CodecSnappy Codec = 1
	// CodecZstd is one zstd frame that states its decoded size (as
	// ZstdEncoder writes it), which Body checks before allocating.
	CodecZstd Codec = 2
	// CodecLegacyGzip marks a body decoded from a 1.0 JSON message (gzip). It is
	// never encoded: Append refuses it.
	CodecLegacyGzip Codec = 0x80
)

// String returns "snappy", "zstd", "legacy-gzip", or "codec(N)" for an unknown value.
func (c Codec) String() string {
	switch c {
	case CodecSnappy:
		return "snappy"
	case CodecZstd:
		return "zstd"
	case CodecLegacyGzip:
		return "legacy-gzip"
	}
	return "codec(" + strconv.Itoa(int(c)) + ")"
}

// Envelope is one scrape as carried on the stream. An Envelope is a plain
// value: it is not safe for concurrent mutation, but concurrent reads
// (including Body) are fine.
type Envelope struct {
	// Job and Instance name the Pushgateway group; both are required, valid
	// UTF-8 and at most MaxNameLen bytes.
	Job, Instance string
	// Publisher names the poller that scraped; it may be empty (1.0 pollers
	// did not always set it). Valid UTF-8, at most MaxNameLen bytes.
	Publisher string
	// ScrapeStart is when the scrape began, kept to the nanosecond. It must
	// be set and lie within int64 Unix nanoseconds (years 1678 to 2262).
	// Decode returns it in UTC.
	ScrapeStart time.Time
	// ScrapeDuration is how long the scrape took; it must not be negative.
	ScrapeDuration time.Duration
	// Outcome says whether the scrape succeeded.
	Outcome Outcome
	// Error is the reason a scrape failed; it is meaningful only with
	// OutcomeFailure. Append replaces invalid UTF-8 and truncates it to
	// MaxErrorLen bytes.
	Error string
	// ContentType is the Content-Type the exporter answered with, which tells
	// the receiver how to parse the body. It may be empty (the exporter sent
	// none); valid UTF-8, at most MaxContentTypeLen bytes.
	ContentType string
	// Codec says how Payload is compressed.
	Codec Codec
	// Payload is the compressed body; it may be empty (a failed scrape). After
	// Decode it aliases the message buffer, so the message must not be
	// modified or reused while the Envelope is in use; copy Payload to keep it
	// longer.
	Payload []byte
	// Legacy reports that the envelope was decoded from the 1.0 JSON format.
	// Append ignores it.
	Legacy bool
}
