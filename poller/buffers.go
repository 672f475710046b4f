package poller

import (
	"bytes"
	"sync"

	"github.com/choria-io/prometheus-streams/internal/bufpool"
)

// maxKeptBuffer is the largest buffer put back for reuse. A target that
// served a huge body (up to body_size_limit, or more and refused) must not
// leave that much memory pinned in the pool for the next scrape of any
// target; such a buffer is dropped for the garbage collector instead.
const maxKeptBuffer = bufpool.MaxKept

// buffers lends the scratch buffers of one scrape: the body as read and
// the compressed body. A target loop borrows them for a single scrape (the
// body only once a 2xx response is in, so a scrape waiting on a slow
// target holds none) and gives them back before it waits for its next
// tick, so the memory they take follows how many bodies are being read
// and compressed at once, not how many targets there are (10,000 targets
// each holding a node exporter's ~64 KiB body and its compressed copy
// between scrapes would pin most of a gigabyte).
//
// What is built from a borrowed buffer must not alias it once the buffer
// is back: the message published is a copy (see Poller.encode). Safe for
// concurrent use. sync.Pool drops idle buffers over two garbage
// collections, so a burst of concurrent scrapes does not pin memory either.
type buffers struct {
	bodies     sync.Pool // of *bytes.Buffer
	compressed bufpool.Slices
}

// body returns an empty body buffer, with the capacity of an earlier
// scrape when one is free.
func (b *buffers) body() *bytes.Buffer {
	if buf, ok := b.bodies.Get().(*bytes.Buffer); ok {
		return buf
	}
	return new(bytes.Buffer)
}

// putBody gives buf back; the caller must not use it afterwards.
func (b *buffers) putBody(buf *bytes.Buffer) {
	if buf.Cap() > maxKeptBuffer {
		return
	}
	buf.Reset()
	b.bodies.Put(buf)
}

// compression returns a buffer to compress into: the slice it points to
// has length 0 and the capacity of an earlier scrape when one is free. The
// caller stores the compressed slice back through the pointer, so that a
// buffer the codec had to grow is the one reused.
func (b *buffers) compression() *[]byte { return b.compressed.Get() }

// putCompression gives buf back; the caller must not use it, or the slice
// it pointed to, afterwards.
func (b *buffers) putCompression(buf *[]byte) { b.compressed.Put(buf) }
