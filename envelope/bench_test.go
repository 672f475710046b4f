package envelope

import (
	"encoding/base64"
	"testing"
)

// The benchmarks run on the node exporter sample with reused buffers, as
// the poller and receiver use them. Append and Decode count the message's
// bytes; Compress and Body count the uncompressed body's.

func BenchmarkAppend(b *testing.B) {
	e := sample(b)
	dst := mustAppend(b, e)
	b.SetBytes(int64(len(dst)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = Append(dst[:0], e); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	msg := mustAppend(b, sample(b))
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompress(b *testing.B) {
	body := nodeExporter(b)
	dst := make([]byte, MaxCompressedLen(len(body)))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		Compress(dst, body)
	}
}

func BenchmarkBody(b *testing.B) {
	body := nodeExporter(b)
	e := sample(b)
	dst := make([]byte, 0, len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Body(dst, len(body)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompressZstd(b *testing.B) {
	body := nodeExporter(b)
	z := newZstd(b)
	dst := z.Compress(nil, body)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		dst = z.Compress(dst, body)
	}
}

func BenchmarkBodyZstd(b *testing.B) {
	body := nodeExporter(b)
	e := &Envelope{Codec: CodecZstd, Payload: newZstd(b).Compress(nil, body)}
	dst := make([]byte, 0, len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Body(dst, len(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLegacyBody is the 1.0 receiver's work per message, Decode (JSON
// and base64) plus gunzip, for comparison with BenchmarkDecode + BenchmarkBody.
func BenchmarkLegacyBody(b *testing.B) {
	body := nodeExporter(b)
	msg := legacyMsg(b, legacyScrape{Job: "node", Instance: "web1:9100", Timestamp: 1700000000, Scrape: legacyGzip(b, body)})
	dst := make([]byte, 0, len(body))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		e, err := Decode(msg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.Body(dst, len(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSizes prints the message sizes quoted in docs/wire-format.md:
//
//	go test -run TestSizes -v ./envelope/
func TestSizes(t *testing.T) {
	body := nodeExporter(t)
	e := sample(t)
	msg := mustAppend(t, e)
	gz := legacyGzip(t, body)
	legacy := legacyMsg(t, legacyScrape{Job: e.Job, Instance: e.Instance, Timestamp: e.ScrapeStart.Unix(), Publisher: e.Publisher, Scrape: gz})
	t.Logf("node exporter body:             %6d bytes", len(body))
	t.Logf("snappy block:                   %6d bytes", len(e.Payload))
	t.Logf("version 1 envelope (snappy):    %6d bytes (header %d)", len(msg), len(msg)-len(e.Payload))
	ez := *e
	ez.Codec, ez.Payload = CodecZstd, newZstd(t).Compress(nil, body)
	msgZstd := mustAppend(t, &ez)
	t.Logf("zstd frame (fastest):           %6d bytes", len(ez.Payload))
	t.Logf("version 1 envelope (zstd):      %6d bytes (header %d)", len(msgZstd), len(msgZstd)-len(ez.Payload))
	t.Logf("1.0 gzip body:                  %6d bytes (base64 %d)", len(gz), base64.StdEncoding.EncodedLen(len(gz)))
	t.Logf("1.0 JSON message (gzip+base64): %6d bytes", len(legacy))
	if len(msg) >= len(body) {
		t.Errorf("the envelope (%d bytes) is not smaller than the body (%d bytes)", len(msg), len(body))
	}
}

// BenchmarkLegacyEncode is the 1.0 poller's work per scrape (gzip at the
// default level, then JSON with base64), for comparison with BenchmarkCompress
// + BenchmarkAppend.
func BenchmarkLegacyEncode(b *testing.B) {
	body := nodeExporter(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		legacyMsg(b, legacyScrape{Job: "node", Instance: "web1:9100", Timestamp: 1700000000, Scrape: legacyGzip(b, body)})
	}
}
