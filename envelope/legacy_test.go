package envelope

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestDecodeLegacy(t *testing.T) {
	body := nodeExporter(t)
	gz := legacyGzip(t, body)
	valid := legacyScrape{Job: "node", Instance: "web1:9100", Timestamp: 1700000000, Publisher: "poller1", Scrape: gz}
	tests := []struct {
		name string
		msg  []byte
		want *Envelope
	}{
		{"as 1.0 published it", legacyMsg(t, valid), &Envelope{
			Job: "node", Instance: "web1:9100", Publisher: "poller1", ScrapeStart: time.Unix(1700000000, 0),
			Outcome: OutcomeSuccess, ContentType: "text/plain; version=0.0.4", Codec: CodecLegacyGzip, Payload: gz, Legacy: true,
		}},
		{"lower-case scrape key and whitespace", []byte(" \n{\"job\":\"j\",\"instance\":\"i\",\"time\":0,\"scrape\":\"AQID\"}\n"), &Envelope{
			Job: "j", Instance: "i", ScrapeStart: time.Unix(0, 0),
			Outcome: OutcomeSuccess, ContentType: "text/plain; version=0.0.4", Codec: CodecLegacyGzip, Payload: []byte{1, 2, 3}, Legacy: true,
		}},
		{"unknown keys are ignored, as 1.0 did", []byte(`{"job":"j","instance":"i","time":-5,"Scrape":"AQID","extra":[1,{}]}`), &Envelope{
			Job: "j", Instance: "i", ScrapeStart: time.Unix(-5, 0),
			Outcome: OutcomeSuccess, ContentType: "text/plain; version=0.0.4", Codec: CodecLegacyGzip, Payload: []byte{1, 2, 3}, Legacy: true,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if !equalEnvelope(got, tc.want) {
				t.Fatalf("Decode\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
	t.Run("body", func(t *testing.T) {
		e, err := Decode(legacyMsg(t, valid))
		if err != nil {
			t.Fatal(err)
		}
		dst := make([]byte, 0, len(body))
		got, err := e.Body(dst, len(body))
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("Body = %d bytes, %v; want the %d-byte sample", len(got), err, len(body))
		}
		if &got[0] != &dst[:1][0] {
			t.Error("Body did not reuse dst")
		}
	})
}

func TestDecodeLegacyInvalid(t *testing.T) {
	gz := legacyGzip(t, []byte("up 1\n"))
	valid := func(modify func(*legacyScrape)) []byte {
		s := legacyScrape{Job: "node", Instance: "web1:9100", Timestamp: 1700000000, Publisher: "p", Scrape: gz}
		modify(&s)
		return legacyMsg(t, s)
	}
	tests := []struct {
		name    string
		msg     []byte
		wantErr error
	}{
		{"not JSON after the brace", []byte("{\x00"), ErrLegacyJSON},
		{"truncated", valid(func(*legacyScrape) {})[:40], ErrLegacyJSON},
		{"bad base64", []byte(`{"job":"j","instance":"i","time":1,"Scrape":"!!!"}`), ErrLegacyJSON},
		{"time as a string", []byte(`{"job":"j","instance":"i","time":"1","Scrape":"AQID"}`), ErrLegacyJSON},
		{"time as a float", []byte(`{"job":"j","instance":"i","time":1.5,"Scrape":"AQID"}`), ErrLegacyJSON},
		{"job as a number", []byte(`{"job":1,"instance":"i","time":1,"Scrape":"AQID"}`), ErrLegacyJSON},
		{"two objects", []byte(`{"job":"j","instance":"i","time":1,"Scrape":"AQID"}{}`), ErrLegacyJSON},
		{"empty object", []byte(`{}`), ErrMissingField},
		{"missing job", valid(func(s *legacyScrape) { s.Job = "" }), ErrMissingField},
		{"missing instance", valid(func(s *legacyScrape) { s.Instance = "" }), ErrMissingField},
		{"missing time", []byte(`{"job":"j","instance":"i","Scrape":"AQID"}`), ErrMissingField},
		{"missing scrape", []byte(`{"job":"j","instance":"i","time":1}`), ErrMissingField},
		{"null scrape", []byte(`{"job":"j","instance":"i","time":1,"scrape":null}`), ErrMissingField},
		{"job too long", valid(func(s *legacyScrape) { s.Job = strings.Repeat("j", MaxNameLen+1) }), ErrFieldTooLong},
		{"instance too long", valid(func(s *legacyScrape) { s.Instance = strings.Repeat("i", MaxNameLen+1) }), ErrFieldTooLong},
		{"publisher too long", valid(func(s *legacyScrape) { s.Publisher = strings.Repeat("p", MaxNameLen+1) }), ErrFieldTooLong},
		{"time after 2262", valid(func(s *legacyScrape) { s.Timestamp = 1 << 40 }), ErrOutOfRange},
		{"time before 1678", valid(func(s *legacyScrape) { s.Timestamp = -(1 << 40) }), ErrOutOfRange},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := Decode(tc.msg)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Decode = %+v, %v; want %v", e, err, tc.wantErr)
			}
		})
	}
}

func TestLegacyBody(t *testing.T) {
	body := []byte("# TYPE up gauge\nup 1\n")
	gz := legacyGzip(t, body)
	bomb := legacyGzipZeros(t, 64<<20)
	tests := []struct {
		name    string
		payload []byte
		limit   int
		want    []byte
		wantErr error
	}{
		{"valid", gz, 1 << 20, body, nil},
		{"exactly the limit", gz, len(body), body, nil},
		{"one byte over the limit", gz, len(body) - 1, nil, ErrBodyTooLarge},
		{"gzip bomb, 64 MiB, limit 16 MiB", bomb, 16 << 20, nil, ErrBodyTooLarge},
		{"not gzip", []byte("up 1\n"), 1 << 20, nil, ErrCorruptBody},
		{"truncated gzip", gz[:len(gz)-6], 1 << 20, nil, ErrCorruptBody},
		{"bad checksum", append(append([]byte{}, gz[:len(gz)-8]...), 0, 0, 0, 0, 0, 0, 0, 0), 1 << 20, nil, ErrCorruptBody},
		{"trailing garbage", append(append([]byte{}, gz...), "garbage"...), 1 << 20, nil, ErrCorruptBody},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkBody(t, &Envelope{Codec: CodecLegacyGzip, Payload: tc.payload, Legacy: true}, nil, tc.limit, tc.want, tc.wantErr)
		})
	}
}

// TestLegacyGzipZeros checks the bomb TestLegacyBody decodes: a gzip member
// that a gzip reader inflates to exactly the zeros it claims, checksum and
// length included, and that is small, as a bomb is.
func TestLegacyGzipZeros(t *testing.T) {
	for _, n := range []int{1 << 20, 2 << 20} {
		gz := legacyGzipZeros(t, n)
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err != nil {
			t.Fatal(err)
		}
		zr.Multistream(false)
		got, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%d zeros: %v", n, err)
		}
		if !bytes.Equal(got, make([]byte, n)) {
			t.Fatalf("%d zeros: inflated to %d bytes that are not all zero", n, len(got))
		}
		t.Logf("%d zeros: %d bytes of gzip", n, len(gz))
		if len(gz) > n/500 {
			t.Fatalf("%d zeros: %d bytes of gzip, not a bomb", n, len(gz))
		}
	}
}
