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
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// ErrMetricsTooLarge is returned (wrapped) by Families when /metrics is
// longer than the limit it was given.
var ErrMetricsTooLarge = errors.New("pushgateway /metrics is larger than the limit")

// familiesAccept asks for delimited protobuf: every family arrives whole in
// one frame, with its type, and nothing needs a text parse.
var familiesAccept = string(expfmt.NewFormat(expfmt.TypeProtoDelim))

// Families reads the Pushgateway's /metrics as delimited protobuf and calls
// fn with each metric family in turn, so the memory it takes is that of the
// largest family, not of the whole store. Each family is freshly allocated;
// fn may keep it. An error from fn ends the read and is returned as is.
//
// limit bounds the bytes read (after any Content-Encoding is undone); a
// longer /metrics fails with ErrMetricsTooLarge. A frame's length prefix is
// never trusted beyond the bytes that actually arrive: the frame buffer
// grows as they do. A non-200 answer is a *StatusError carrying the
// Pushgateway's reason (for a 500, the gathering error that broke
// /metrics).
func (c *Client) Families(ctx context.Context, limit int64, fn func(*dto.MetricFamily) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/metrics", nil)
	if err != nil {
		return fmt.Errorf("read families: build request: %w", err)
	}
	req.Header.Set("Accept", familiesAccept)
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("read families: %w", err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode != http.StatusOK {
		reason, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
		return fmt.Errorf("read families: %w", &StatusError{
			Code: resp.StatusCode, Reason: strings.TrimSpace(string(reason)), Method: http.MethodGet, Path: "/metrics",
		})
	}
	mediaType, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mediaType != expfmt.ProtoType || params["encoding"] != "delimited" {
		return fmt.Errorf("read families: GET /metrics answered %q, not delimited protobuf", resp.Header.Get("Content-Type"))
	}
	if err := readFrames(resp.Body, limit, fn); err != nil {
		return fmt.Errorf("read families: %w", err)
	}
	return nil
}

// readFrames decodes length-delimited MetricFamily frames from r, at most
// limit bytes in all.
func readFrames(r io.Reader, limit int64, fn func(*dto.MetricFamily) error) error {
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
		mf := &dto.MetricFamily{}
		if err := proto.Unmarshal(frame.Bytes(), mf); err != nil {
			return fmt.Errorf("frame at byte %d: %w", at, err)
		}
		if err := fn(mf); err != nil {
			return err
		}
	}
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
