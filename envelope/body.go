package envelope

import (
	"encoding/binary"
	"fmt"

	"github.com/golang/snappy"
)

// maxSnappyRatio bounds how far a snappy block can inflate: the densest
// element is a 3-byte copy of 64 bytes (21.3x). A block claiming more than
// this is corrupt whatever the limit, which stops a tiny message from making
// the receiver allocate a limit-sized buffer it can never fill.
const maxSnappyRatio = 22

// Body decompresses Payload and returns the exposition, never more than limit
// bytes (a negative limit is taken as 0). It writes into dst when cap(dst)
// suffices and allocates otherwise, so a caller that reuses dst decompresses
// without allocating; the result aliases dst in that case. An empty Payload is
// an empty body.
//
// For CodecSnappy the block's stated length is checked against limit before
// anything is allocated (ErrBodyTooLarge). For CodecZstd the frame header
// must state the decoded size, which is checked the same way; a frame without
// it is ErrCorruptBody. For CodecLegacyGzip the limit is
// enforced while inflating. A body that does not decompress is
// ErrCorruptBody; an unknown Codec is ErrUnknownCodec.
func (e *Envelope) Body(dst []byte, limit int) ([]byte, error) {
	limit = max(limit, 0)
	if len(e.Payload) == 0 {
		return dst[:0], nil
	}
	switch e.Codec {
	case CodecSnappy:
		return unsnappy(dst, e.Payload, limit)
	case CodecZstd:
		return unzstd(dst, e.Payload, limit)
	case CodecLegacyGzip:
		return gunzip(dst, e.Payload, limit)
	}
	return nil, fmt.Errorf("envelope: body: %w (%s)", ErrUnknownCodec, e.Codec)
}

func unsnappy(dst, block []byte, limit int) ([]byte, error) {
	// Read the length ourselves rather than via snappy.DecodedLen, which calls
	// lengths over 4 GiB corrupt: an oversized claim must be ErrBodyTooLarge.
	n, hdr := binary.Uvarint(block)
	if hdr <= 0 {
		return nil, fmt.Errorf("envelope: body: %w (bad snappy length header)", ErrCorruptBody)
	}
	if n > uint64(limit) {
		return nil, fmt.Errorf("envelope: body: %w (%d bytes, limit %d)", ErrBodyTooLarge, n, limit)
	}
	if n > uint64(len(block)-hdr)*maxSnappyRatio {
		return nil, fmt.Errorf("envelope: body: %w (%d compressed bytes cannot inflate to %d)", ErrCorruptBody, len(block)-hdr, n)
	}
	buf := dst[:cap(dst)]
	if uint64(len(buf)) < n {
		buf = make([]byte, n)
	}
	body, err := snappy.Decode(buf, block)
	if err != nil {
		return nil, fmt.Errorf("envelope: body: %w: %w", ErrCorruptBody, err)
	}
	return body, nil
}
