package envelope

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// legacyContentType is what 1.0 pollers scraped: they sent no Accept header
// and kept no Content-Type, and exporters answered the text format.
const legacyContentType = "text/plain; version=0.0.4"

// legacyMessage is the 1.0 poller's message. 1.0 wrote the body under the
// key "Scrape" (no struct tag); encoding/json matches keys case-insensitively,
// so "scrape" is accepted as well, as the 1.0 receiver did. Time is a pointer
// so that a missing key is told apart from 1970.
type legacyMessage struct {
	Job       string `json:"job"`
	Instance  string `json:"instance"`
	Time      *int64 `json:"time"`
	Publisher string `json:"publisher"`
	Scrape    []byte `json:"scrape"`
}

// decodeLegacy parses a 1.0 JSON message. Every allocation is bounded by the
// message: the strings are copies of parts of it, and the base64 body decodes
// to at most three quarters of its quoted length. encoding/json replaces
// invalid UTF-8 with U+FFFD, so the strings are always valid.
func decodeLegacy(msg []byte) (*Envelope, error) {
	var m legacyMessage
	if err := json.Unmarshal(msg, &m); err != nil {
		return nil, fmt.Errorf("envelope: %w: %w", ErrLegacyJSON, err)
	}
	if err := checkName("legacy job", m.Job, true); err != nil {
		return nil, err
	}
	if err := checkName("legacy instance", m.Instance, true); err != nil {
		return nil, err
	}
	if err := checkName("legacy publisher", m.Publisher, false); err != nil {
		return nil, err
	}
	if m.Time == nil {
		return nil, fmt.Errorf("envelope: legacy time: %w", ErrMissingField)
	}
	start, err := legacyTime(*m.Time)
	if err != nil {
		return nil, err
	}
	if len(m.Scrape) == 0 {
		return nil, fmt.Errorf("envelope: legacy scrape: %w", ErrMissingField)
	}
	return &Envelope{
		Job:         m.Job,
		Instance:    m.Instance,
		Publisher:   m.Publisher,
		ScrapeStart: start,
		Outcome:     OutcomeSuccess,
		ContentType: legacyContentType,
		Codec:       CodecLegacyGzip,
		Payload:     m.Scrape,
		Legacy:      true,
	}, nil
}

// legacyTime holds 1.0's Unix seconds to the range version 1 can carry, so
// that a legacy envelope is as valid as any other.
func legacyTime(sec int64) (time.Time, error) {
	if sec <= math.MinInt64/1_000_000_000 || sec >= math.MaxInt64/1_000_000_000 {
		return time.Time{}, fmt.Errorf("envelope: legacy time: %w (%d s is outside int64 Unix nanoseconds)", ErrOutOfRange, sec)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// gunzip inflates a 1.0 body. gzip does not state its decoded length, so the
// limit is enforced while reading: at most limit+1 bytes are read, and one
// byte over means too large.
func gunzip(dst, payload []byte, limit int) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("envelope: body: %w: %w", ErrCorruptBody, err)
	}
	defer func() { _ = zr.Close() }()
	read := int64(limit)
	if read < math.MaxInt64 {
		read++
	}
	body, err := readInto(dst[:0], io.LimitReader(zr, read))
	if err != nil {
		return nil, fmt.Errorf("envelope: body: %w: %w", ErrCorruptBody, err)
	}
	if len(body) > limit {
		return nil, fmt.Errorf("envelope: body: %w (more than %d bytes, limit %d)", ErrBodyTooLarge, limit, limit)
	}
	return body, nil
}

// readInto appends r's content to buf until EOF. Unlike io.ReadAll and
// bytes.Buffer it probes for EOF before growing a full buffer, so a body that
// fits buf exactly costs no allocation.
func readInto(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			var probe [1]byte
			n, err := r.Read(probe[:])
			buf = append(buf, probe[:n]...)
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			if err != nil {
				return nil, err
			}
			continue
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
