package envelope

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
)

func TestBody(t *testing.T) {
	body := nodeExporter(t)
	block := Compress(nil, body)
	// A block that really inflates to 64 MiB: zeros compress about 21 to 1.
	big := Compress(nil, make([]byte, 64<<20))
	corrupt := append([]byte{}, block...)
	for i := 8; i < len(corrupt); i += 7 {
		corrupt[i] ^= 0xa5
	}
	tests := []struct {
		name    string
		codec   Codec
		payload []byte
		limit   int
		want    []byte
		wantErr error
	}{
		{"node exporter", CodecSnappy, block, 16 << 20, body, nil},
		{"exactly the limit", CodecSnappy, block, len(body), body, nil},
		{"one byte over the limit", CodecSnappy, block, len(body) - 1, nil, ErrBodyTooLarge},
		{"empty payload", CodecSnappy, nil, 0, []byte{}, nil},
		{"empty payload, unknown codec", 0, nil, 0, []byte{}, nil},
		{"empty block", CodecSnappy, Compress(nil, nil), 0, []byte{}, nil},
		{"negative limit", CodecSnappy, block, -1, nil, ErrBodyTooLarge},
		{"claims 1 TiB", CodecSnappy, binary.AppendUvarint(nil, 1<<40), 16 << 20, nil, ErrBodyTooLarge},
		{"really inflates to 64 MiB, limit 16 MiB", CodecSnappy, big, 16 << 20, nil, ErrBodyTooLarge},
		{"claims more than snappy can inflate", CodecSnappy, append(binary.AppendUvarint(nil, 1<<20), 0, 0, 0), 16 << 20, nil, ErrCorruptBody},
		{"corrupt block", CodecSnappy, corrupt, 16 << 20, nil, ErrCorruptBody},
		{"truncated block", CodecSnappy, block[:len(block)/2], 16 << 20, nil, ErrCorruptBody},
		{"bad length header", CodecSnappy, []byte{0x80}, 16 << 20, nil, ErrCorruptBody},
		{"unknown codec", 3, block, 16 << 20, nil, ErrUnknownCodec},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkBody(t, &Envelope{Codec: tc.codec, Payload: tc.payload}, nil, tc.limit, tc.want, tc.wantErr)
		})
	}
}

// checkBody checks that e.Body(dst, limit) returns want, or fails with
// wantErr and no bytes.
func checkBody(t *testing.T, e *Envelope, dst []byte, limit int, want []byte, wantErr error) {
	t.Helper()
	got, err := e.Body(dst, limit)
	if !errors.Is(err, wantErr) {
		t.Fatalf("Body error = %v, want %v", err, wantErr)
	}
	if err == nil && !bytes.Equal(got, want) {
		t.Fatalf("Body = %d bytes, want %d", len(got), len(want))
	}
	if err != nil && got != nil {
		t.Errorf("Body returned %d bytes with an error", len(got))
	}
}

func TestBodyInflatesLargeBlock(t *testing.T) {
	e := &Envelope{Codec: CodecSnappy, Payload: Compress(nil, make([]byte, 64<<20))}
	got, err := e.Body(nil, 64<<20)
	if err != nil || len(got) != 64<<20 {
		t.Fatalf("Body = %d bytes, %v; want 64 MiB", len(got), err)
	}
}

// TestBodyRefusesBeforeAllocating checks the bomb defence: a block whose
// header claims 1 TiB (or more than it can hold) costs no more than the error.
func TestBodyRefusesBeforeAllocating(t *testing.T) {
	tests := []struct {
		name    string
		payload []byte
		wantErr error
	}{
		{"claims 1 TiB", append(binary.AppendUvarint(nil, 1<<40), 0), ErrBodyTooLarge},
		{"claims 16 MiB from 1 byte", append(binary.AppendUvarint(nil, 16<<20), 0), ErrCorruptBody},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			refusedCheaply(t, &Envelope{Codec: CodecSnappy, Payload: tc.payload}, tc.wantErr)
		})
	}
}

// refusedCheaply checks that Body refuses e's payload with wantErr and
// allocates only the error itself: a few small objects (more under -race),
// never the size the payload claims.
func refusedCheaply(t *testing.T, e *Envelope, wantErr error) {
	t.Helper()
	var err error
	const runs = 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	allocs := testing.AllocsPerRun(runs, func() { _, err = e.Body(nil, 16<<20) })
	runtime.ReadMemStats(&after)
	if !errors.Is(err, wantErr) {
		t.Fatalf("Body error = %v, want %v", err, wantErr)
	}
	if allocs > 10 {
		t.Errorf("Body allocated %v times per call", allocs)
	}
	if perCall := (after.TotalAlloc - before.TotalAlloc) / (runs + 1); perCall > 1024 {
		t.Errorf("Body allocated %d bytes per call", perCall)
	}
}

func TestBodyReusesBuffer(t *testing.T) {
	body := nodeExporter(t)
	e := &Envelope{Codec: CodecSnappy, Payload: Compress(nil, body)}
	tests := []struct {
		name      string
		dst       []byte
		wantReuse bool
	}{
		{"nil", nil, false},
		{"too small", make([]byte, 0, len(body)-1), false},
		{"exact", make([]byte, 0, len(body)), true},
		{"larger, with stale contents", bytes.Repeat([]byte{'x'}, 2*len(body)), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.Body(tc.dst, len(body))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, body) {
				t.Fatal("Body returned the wrong bytes")
			}
			if reused := cap(tc.dst) > 0 && &got[0] == &tc.dst[:1][0]; reused != tc.wantReuse {
				t.Errorf("dst reused = %v, want %v", reused, tc.wantReuse)
			}
		})
	}
	dst := make([]byte, 0, len(body))
	if allocs := testing.AllocsPerRun(20, func() { _, _ = e.Body(dst, len(body)) }); allocs != 0 {
		t.Errorf("Body into a large enough dst allocated %v times, want 0", allocs)
	}
}
