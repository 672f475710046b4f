package envelope

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func newZstd(tb testing.TB) *ZstdEncoder {
	tb.Helper()
	z, err := NewZstdEncoder()
	if err != nil {
		tb.Fatal(err)
	}
	return z
}

// zstdClaim is a single-segment frame header stating size, followed by
// rest: what a hostile poller would write to make the receiver allocate.
func zstdClaim(size uint64, rest ...byte) []byte {
	b := []byte{0x28, 0xb5, 0x2f, 0xfd, 0xe0} // magic; single segment, 8-byte size
	b = binary.LittleEndian.AppendUint64(b, size)
	return append(b, rest...)
}

func TestZstdBody(t *testing.T) {
	z := newZstd(t)
	body := nodeExporter(t)
	frame := z.Compress(nil, body)
	big := z.Compress(nil, make([]byte, 64<<20))
	corrupt := append([]byte{}, frame...)
	for i := 16; i < len(corrupt); i += 7 {
		corrupt[i] ^= 0xa5
	}
	// The library's default encoder leaves the size out of small frames.
	plain, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	noSize := plain.EncodeAll([]byte("up 1\n"), nil)
	tests := []struct {
		name    string
		payload []byte
		limit   int
		want    []byte
		wantErr error
	}{
		{"node exporter", frame, 16 << 20, body, nil},
		{"exactly the limit", frame, len(body), body, nil},
		{"one byte over the limit", frame, len(body) - 1, nil, ErrBodyTooLarge},
		{"tiny body states its size", z.Compress(nil, []byte("up 1\n")), 16, []byte("up 1\n"), nil},
		{"empty body is an empty payload", z.Compress(nil, nil), 0, []byte{}, nil},
		{"negative limit", frame, -1, nil, ErrBodyTooLarge},
		{"claims 1 TiB", zstdClaim(1<<40, 0), 16 << 20, nil, ErrBodyTooLarge},
		{"really inflates to 64 MiB, limit 16 MiB", big, 16 << 20, nil, ErrBodyTooLarge},
		{"claims more than zstd can inflate", zstdClaim(1<<20, 0, 0, 0), 16 << 20, nil, ErrCorruptBody},
		{"frame without a stated size", noSize, 16 << 20, nil, ErrCorruptBody},
		{"skippable frame", []byte{0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0}, 16 << 20, nil, ErrCorruptBody},
		{"not a zstd frame", []byte("up 1\n"), 16 << 20, nil, ErrCorruptBody},
		{"corrupt frame", corrupt, 16 << 20, nil, ErrCorruptBody},
		{"truncated frame", frame[:len(frame)/2], 16 << 20, nil, ErrCorruptBody},
		{"truncated header", frame[:5], 16 << 20, nil, ErrCorruptBody},
		{"two frames", append(z.Compress(nil, []byte("up 1\n")), z.Compress(nil, []byte("up 0\n"))...), 16 << 20, nil, ErrCorruptBody},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &Envelope{Codec: CodecZstd, Payload: tc.payload}
			for _, dst := range [][]byte{nil, make([]byte, 0, 2*len(body))} {
				checkBody(t, e, dst, tc.limit, tc.want, tc.wantErr)
			}
		})
	}
}

// TestZstdRoundTrip carries zstd bodies through the whole envelope.
func TestZstdRoundTrip(t *testing.T) {
	z := newZstd(t)
	tests := []struct {
		name string
		body []byte
	}{
		{"node exporter", nodeExporter(t)},
		{"one line", []byte("up 1\n")},
		{"255 bytes", bytes.Repeat([]byte{'a'}, 255)},
		{"1 MiB of zeros", make([]byte, 1<<20)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := sample(t)
			in.Codec, in.Payload = CodecZstd, z.Compress(nil, tc.body)
			e, err := Decode(mustAppend(t, in))
			if err != nil {
				t.Fatal(err)
			}
			if !equalEnvelope(e, in) {
				t.Fatalf("round trip\n got %+v\nwant %+v", e, in)
			}
			got, err := e.Body(nil, len(tc.body))
			if err != nil || !bytes.Equal(got, tc.body) {
				t.Fatalf("Body = %d bytes, %v; want %d bytes", len(got), err, len(tc.body))
			}
		})
	}
}

// TestZstdRefusesBeforeAllocating is TestBodyRefusesBeforeAllocating for
// zstd: a header that claims too much costs no more than the error.
func TestZstdRefusesBeforeAllocating(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		wantErr error
	}{
		{"claims 1 TiB", zstdClaim(1<<40, 0), ErrBodyTooLarge},
		{"claims 16 MiB from 3 bytes", zstdClaim(16<<20, 0, 0, 0), ErrCorruptBody},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			refusedCheaply(t, &Envelope{Codec: CodecZstd, Payload: tc.payload}, tc.wantErr)
		})
	}
}

func TestZstdReusesBuffers(t *testing.T) {
	z := newZstd(t)
	body := nodeExporter(t)
	e := &Envelope{Codec: CodecZstd, Payload: z.Compress(nil, body)}
	dst := make([]byte, 0, len(body))
	_, _ = e.Body(dst, len(body)) // warm the decoder pool
	if raceEnabled {
		t.Log("decoder reuse not checked: sync.Pool drops items under -race")
	} else if allocs := testing.AllocsPerRun(20, func() { _, _ = e.Body(dst, len(body)) }); allocs != 0 {
		t.Errorf("Body into a large enough dst allocated %v times, want 0", allocs)
	}
	buf := make([]byte, 0, len(body))
	if allocs := testing.AllocsPerRun(20, func() { buf = z.Compress(buf, body) }); allocs != 0 {
		t.Errorf("Compress into a large enough dst allocated %v times, want 0", allocs)
	}
}

// TestZstdConcurrent shares one encoder and the decoder pool between
// goroutines, for the race detector.
func TestZstdConcurrent(t *testing.T) {
	z := newZstd(t)
	body := nodeExporter(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10 {
				e := &Envelope{Codec: CodecZstd, Payload: z.Compress(nil, body)}
				got, err := e.Body(nil, len(body))
				if err != nil || !bytes.Equal(got, body) {
					t.Errorf("Body = %d bytes, %v", len(got), err)
					return
				}
			}
		})
	}
	wg.Wait()
}
