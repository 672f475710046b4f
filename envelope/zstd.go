package envelope

import (
	"fmt"
	"math"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// maxZstdRatio bounds how far a zstd frame can inflate: a block holds at
// most 128 KiB and the smallest block (RLE) is 4 bytes, header included. A
// frame claiming more than this is corrupt whatever the limit, the zstd
// counterpart of maxSnappyRatio.
const maxZstdRatio = (128 << 10) / 4

// ZstdEncoder compresses bodies with zstd at its fastest level, keeping its
// tables between calls. Create one with NewZstdEncoder and reuse it: Compress
// is safe for concurrent use, but calls on one ZstdEncoder run one at a time
// (the encoder holds one set of state, about 1 MiB once used), so a caller
// that compresses on many goroutines shares one to bound memory and accepts
// the queueing, or holds one per goroutine.
type ZstdEncoder struct {
	enc *zstd.Encoder
}

// NewZstdEncoder returns an encoder whose frames Body accepts: one frame per
// body, single segment, so that the frame header always states the body's
// size, with a content checksum.
func NewZstdEncoder() (*ZstdEncoder, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1),
		// EncodeAll leaves the content size out of frames under 256
		// bytes unless the frame is single segment; Body needs it.
		zstd.WithSingleSegment(true),
	)
	if err != nil {
		return nil, fmt.Errorf("envelope: zstd encoder: %w", err)
	}
	return &ZstdEncoder{enc: enc}, nil
}

// Compress zstd-encodes body as one frame and returns it, written over dst
// (from dst[:0]) when cap(dst) suffices and allocated otherwise; dst and
// body must not overlap. An empty body compresses to an empty payload.
func (z *ZstdEncoder) Compress(dst, body []byte) []byte {
	if len(body) == 0 {
		return dst[:0]
	}
	return z.enc.EncodeAll(body, dst[:0])
}

// zstdDecoders lends zstd decoders to Body. Body keeps its signature (no
// decoder argument), so the decoders live here rather than with the caller;
// a pool rather than one decoder per call because a decoder costs about
// 100 KB of buffers to set up. The pool is only a cache of interchangeable
// decoders: no caller can observe or change what it holds, which is why it
// is the one package-level variable. Pooled decoders cannot carry a caller's
// limit, so the limit is applied per call through the capacity of the
// destination (zstd.WithDecodeAllCapLimit), not zstd.WithDecoderMaxMemory.
var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(math.MaxInt),
	)
	if err != nil {
		return err // only for invalid options, which are fixed here
	}
	return d
}}

// unzstd inflates one zstd frame. The frame header must state the body's
// size; it is checked against limit and against what the frame's bytes can
// produce before anything is allocated. The decoder then writes into a buffer
// of exactly the stated size (or dst, capped at limit) and may not grow it.
func unzstd(dst, frame []byte, limit int) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(frame); err != nil {
		return nil, fmt.Errorf("envelope: body: %w: zstd header: %w", ErrCorruptBody, err)
	}
	if h.Skippable || !h.HasFCS {
		return nil, fmt.Errorf("envelope: body: %w (zstd frame does not state its size)", ErrCorruptBody)
	}
	n := h.FrameContentSize
	if n > uint64(limit) {
		return nil, fmt.Errorf("envelope: body: %w (%d bytes, limit %d)", ErrBodyTooLarge, n, limit)
	}
	if n > uint64(len(frame)-h.HeaderSize)*maxZstdRatio {
		return nil, fmt.Errorf("envelope: body: %w (%d compressed bytes cannot inflate to %d)", ErrCorruptBody, len(frame)-h.HeaderSize, n)
	}
	buf := dst[:0:min(cap(dst), limit)]
	if uint64(cap(buf)) < n {
		buf = make([]byte, 0, n)
	}
	d, ok := zstdDecoders.Get().(*zstd.Decoder)
	if !ok {
		return nil, fmt.Errorf("envelope: body: zstd decoder: %w", ErrUnknownCodec)
	}
	body, err := d.DecodeAll(frame, buf)
	zstdDecoders.Put(d)
	if err != nil {
		return nil, fmt.Errorf("envelope: body: %w: %w", ErrCorruptBody, err)
	}
	// Only a second frame can take the body past its stated size (the
	// decoder checks each frame against its own header).
	if uint64(len(body)) != n {
		return nil, fmt.Errorf("envelope: body: %w (%d bytes after a frame stating %d)", ErrCorruptBody, len(body), n)
	}
	return body, nil
}
