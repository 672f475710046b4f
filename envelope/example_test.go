package envelope

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// TestDocumentedExample keeps the worked example in docs/wire-format.md true.
func TestDocumentedExample(t *testing.T) {
	e := &Envelope{
		Job: "node", Instance: "web1:9100", Publisher: "p1",
		ScrapeStart:    time.Date(2025, 11, 25, 1, 2, 3, 456789012, time.UTC),
		ScrapeDuration: 23456789 * time.Nanosecond,
		Outcome:        OutcomeSuccess,
		ContentType:    "text/plain; version=0.0.4",
		Codec:          CodecSnappy,
		Payload:        Compress(nil, []byte("up 1\n")),
	}
	msg, err := Append(nil, e)
	if err != nil {
		t.Fatal(err)
	}
	if len(msg) != 71 {
		t.Fatalf("the example encodes to %d bytes; the doc says 71", len(msg))
	}
	want := []string{
		"ff505301", "046e6f6465", "0977656231 3a39313030", "027031", "187b1a3bdce0ba14", "95d8970b", "01", "00",
		"19" + hex.EncodeToString([]byte("text/plain; version=0.0.4")), "01", "07051075702031 0a",
	}
	if got, w := hex.EncodeToString(msg), strings.ReplaceAll(strings.Join(want, ""), " ", ""); got != w {
		t.Fatalf("the example encodes to\n%s\nthe doc shows\n%s", got, w)
	}
}
