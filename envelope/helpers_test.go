package envelope

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"os"
	"testing"
	"time"
)

const (
	textContentType  = "text/plain; version=0.0.4; charset=utf-8"
	protoContentType = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
)

// nodeExporter is a real scrape: a Debian prometheus-node-exporter, 57,560 bytes.
func nodeExporter(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile("../testdata/node_exporter.prom")
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// sample is the envelope a poller would publish for a node exporter scrape.
func sample(tb testing.TB) *Envelope {
	tb.Helper()
	return &Envelope{
		Job:            "node",
		Instance:       "web1.dc2.example.net:9100",
		Publisher:      "poller1.dc2.example.net",
		ScrapeStart:    time.Date(2025, 11, 25, 1, 2, 3, 456789012, time.UTC),
		ScrapeDuration: 23456789 * time.Nanosecond,
		Outcome:        OutcomeSuccess,
		ContentType:    textContentType,
		Codec:          CodecSnappy,
		Payload:        Compress(nil, nodeExporter(tb)),
	}
}

func mustAppend(tb testing.TB, e *Envelope) []byte {
	tb.Helper()
	msg, err := Append(nil, e)
	if err != nil {
		tb.Fatalf("Append: %v", err)
	}
	return msg
}

// equalEnvelope compares field by field: times with Equal (locations differ
// after a round trip) and payloads by content (nil and empty are the same).
func equalEnvelope(a, b *Envelope) bool {
	return a.Job == b.Job && a.Instance == b.Instance && a.Publisher == b.Publisher &&
		a.ScrapeStart.Equal(b.ScrapeStart) && a.ScrapeDuration == b.ScrapeDuration &&
		a.Outcome == b.Outcome && a.Error == b.Error && a.ContentType == b.ContentType &&
		a.Codec == b.Codec && bytes.Equal(a.Payload, b.Payload) && a.Legacy == b.Legacy
}

// raw builds a version 1 message field by field without validation, so that
// tests can write what Append refuses to.
type raw struct {
	magic                    string
	version                  byte
	job, instance, publisher string
	start                    int64
	duration                 uint64
	outcome                  byte
	errText, contentType     string
	codec                    byte
	payload                  []byte
	payloadLen               *uint64 // overrides len(payload)
	trailing                 []byte
	jobLen                   *uint64 // overrides len(job)
}

// validRaw is a well-formed message for raw's callers to break one field of.
func validRaw() raw {
	return raw{
		magic: Magic, version: Version, job: "node", instance: "host:9100", publisher: "p1",
		start: 1_700_000_000_123_456_789, duration: 1500, outcome: byte(OutcomeSuccess),
		contentType: textContentType, codec: byte(CodecSnappy), payload: Compress(nil, []byte("up 1\n")),
	}
}

func (r raw) bytes() []byte {
	b := []byte(r.magic)
	b = append(b, r.version)
	if r.jobLen != nil {
		b = binary.AppendUvarint(b, *r.jobLen)
		b = append(b, r.job...)
	} else {
		b = appendString(b, r.job)
	}
	b = appendString(b, r.instance)
	b = appendString(b, r.publisher)
	b = binary.BigEndian.AppendUint64(b, uint64(r.start))
	b = binary.AppendUvarint(b, r.duration)
	b = append(b, r.outcome)
	b = appendString(b, r.errText)
	b = appendString(b, r.contentType)
	b = append(b, r.codec)
	n := uint64(len(r.payload))
	if r.payloadLen != nil {
		n = *r.payloadLen
	}
	b = binary.AppendUvarint(b, n)
	b = append(b, r.payload...)
	return append(b, r.trailing...)
}

func u64(v uint64) *uint64 { return &v }

// legacyScrape is the 1.0 poller's message struct, reproduced to build test
// messages exactly as 1.0 published them (note: no tag on Scrape).
type legacyScrape struct {
	Job       string `json:"job"`
	Instance  string `json:"instance"`
	Timestamp int64  `json:"time"`
	Publisher string `json:"publisher"`
	Scrape    []byte
}

// legacyGzip compresses as the 1.0 poller did: default level, Flush, Close.
func legacyGzip(tb testing.TB, body []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	gz := gzip.NewWriter(&b)
	if _, err := gz.Write(body); err != nil {
		tb.Fatal(err)
	}
	if err := gz.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func legacyMsg(tb testing.TB, s legacyScrape) []byte {
	tb.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// legacyGzipZeros is a gzip member that inflates to n zero bytes (n a
// multiple of 64 KiB), as legacyGzip(tb, make([]byte, n)) would write, but
// without running n bytes through the compressor, which takes seconds for
// 64 MiB under the race detector. It is the deflate blocks of 64 KiB of
// zeros, flushed to a byte boundary, written n/64KiB times (each copy
// refers back only into itself), then a final empty block and gzip's
// trailer: the CRC-32 and length of the n zeros.
func legacyGzipZeros(tb testing.TB, n int) []byte {
	tb.Helper()
	const chunk = 64 << 10
	if n <= 0 || n%chunk != 0 || n >= 1<<32 {
		tb.Fatalf("legacyGzipZeros(%d): want a positive multiple of 64 KiB below 4 GiB", n)
	}
	zeros := make([]byte, chunk)
	var blocks bytes.Buffer
	fw, err := flate.NewWriter(&blocks, flate.DefaultCompression)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := fw.Write(zeros); err != nil {
		tb.Fatal(err)
	}
	// Flush ends the blocks with an empty stored block: byte-aligned, not final.
	if err := fw.Flush(); err != nil {
		tb.Fatal(err)
	}
	b := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff} // gzip header: deflate, no flags, no mtime, unknown OS
	crc := uint32(0)
	for range n / chunk {
		b = append(b, blocks.Bytes()...)
		crc = crc32.Update(crc, crc32.IEEETable, zeros)
	}
	b = append(b, 0x01, 0x00, 0x00, 0xff, 0xff) // final empty stored block
	b = binary.LittleEndian.AppendUint32(b, crc)
	return binary.LittleEndian.AppendUint32(b, uint32(n))
}
