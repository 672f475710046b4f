package pushgateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// ErrMetricsTooLarge is returned (wrapped in an *Error) by Families and
// Groups when /metrics is longer than the limit they were given.
var ErrMetricsTooLarge = errors.New("pushgateway /metrics is larger than the limit")

// familiesAccept asks for delimited protobuf: every family arrives whole in
// one frame, with its type, and nothing needs a text parse.
var familiesAccept = string(expfmt.NewFormat(expfmt.TypeProtoDelim))

// Families reads the Pushgateway's /metrics as delimited protobuf and calls
// fn with each metric family in turn, so the memory it takes is that of the
// largest family, not of the whole store. Each family is freshly allocated;
// fn may keep it. An error from fn ends the read and is returned wrapped.
//
// limit bounds the bytes read (after any Content-Encoding is undone); a
// longer /metrics fails with ErrMetricsTooLarge. A frame's length prefix is
// never trusted beyond the bytes that actually arrive: the frame buffer
// grows as they do. An error is an *Error; a non-200 answer's carries the
// Pushgateway's reason (for a 500, the gathering error that broke
// /metrics).
func (c *Client) Families(ctx context.Context, limit int64, fn func(*dto.MetricFamily) error) error {
	return c.families(ctx, "read families", limit, nil, fn)
}

// families is Families for op, decoding only the families want (nil: all)
// wants by name.
func (c *Client) families(ctx context.Context, op string, limit int64, want func(name string) bool, fn func(*dto.MetricFamily) error) error {
	resp, err := c.send(ctx, op, http.MethodGet, "/metrics", "", familiesAccept, nil)
	if err != nil {
		return err
	}
	defer closeBody(resp)
	fail := func(err error) error { return &Error{Op: op, Method: http.MethodGet, Path: "/metrics", Err: err} }
	mediaType, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mediaType != expfmt.ProtoType || params["encoding"] != "delimited" {
		return fail(fmt.Errorf("GET /metrics answered %q, not delimited protobuf", resp.Header.Get("Content-Type")))
	}
	if err := readFrames(resp.Body, limit, want, fn); err != nil {
		return fail(err)
	}
	return nil
}

// readFrames decodes length-delimited MetricFamily frames from r, at most
// limit bytes in all; with want, only those whose name it wants.
func readFrames(r io.Reader, limit int64, want func(string) bool, fn func(*dto.MetricFamily) error) error {
	lr := &io.LimitedReader{R: r, N: limit}
	br := bufio.NewReaderSize(lr, 64<<10)
	read := func() int64 { return limit - lr.N - int64(br.Buffered()) }
	var frame bytes.Buffer
	for {
		at := read()
		size, err := readUvarint(br)
		if errors.Is(err, io.EOF) {
			if lr.N == 0 && overLimit(r) {
				return fmt.Errorf("%w (%d bytes)", ErrMetricsTooLarge, limit)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("frame at byte %d: %w", at, err)
		}
		if left := limit - read(); size > uint64(left) {
			return fmt.Errorf("%w (%d bytes): frame at byte %d claims %d bytes", ErrMetricsTooLarge, limit, at, size)
		}
		frame.Reset()
		// CopyN grows the buffer as the bytes arrive, not to what the
		// prefix claims.
		if n, err := io.CopyN(&frame, br, int64(size)); err != nil {
			return fmt.Errorf("frame at byte %d: %d of %d bytes: %w", at, n, size, noEOF(err))
		}
		if want != nil {
			// A frame whose name cannot be read is decoded, and its
			// error reported.
			if name, ok := frameName(frame.Bytes()); ok && !want(name) {
				continue
			}
		}
		mf := &dto.MetricFamily{}
		if err := proto.Unmarshal(frame.Bytes(), mf); err != nil {
			return fmt.Errorf("frame at byte %d: %w", at, err)
		}
		if err := fn(mf); err != nil {
			return err
		}
	}
}

// frameName returns the name (field 1) of the MetricFamily encoded in b
// without decoding the rest, false when b is not readable that far.
func frameName(b []byte) (string, bool) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			name, n := protowire.ConsumeBytes(b)
			return string(name), n >= 0
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return "", false
		}
		b = b[n:]
	}
	return "", false
}

// readUvarint is binary.ReadUvarint returning io.EOF only when no byte of
// the varint was read.
func readUvarint(br *bufio.Reader) (uint64, error) {
	var v uint64
	for i := 0; i < 10; i++ {
		b, err := br.ReadByte()
		if err != nil {
			if i > 0 {
				return 0, noEOF(err)
			}
			return 0, err
		}
		if i == 9 && b > 1 {
			break
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("frame length overflows 64 bits")
}

// overLimit reports whether r has another byte past the limit.
func overLimit(r io.Reader) bool {
	var b [1]byte
	n, _ := io.ReadFull(r, b[:])
	return n > 0
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
