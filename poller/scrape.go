package poller

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// acceptHeader asks for the formats the receiver decodes with
// prometheus/common's expfmt: text 0.0.4 first (what most exporters serve
// and what compresses best), then delimited protobuf. OpenMetrics is not
// offered: expfmt has no parser for it.
const acceptHeader = `text/plain;version=0.0.4;q=0.9,` +
	`application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.5,` +
	`*/*;q=0.1`

// scrapeError is a failed scrape with a bounded reason for metrics.
type scrapeError struct {
	reason string
	err    error
}

func (e *scrapeError) Error() string { return e.err.Error() }
func (e *scrapeError) Unwrap() error { return e.err }

// scraper fetches exposition bodies. Bodies are not parsed: the poller
// forwards the bytes as scraped and leaves parsing to the receiver. It is
// safe for concurrent use.
type scraper struct {
	bodyLimit int64
	userAgent string
	gzip      sync.Pool // of *gzip.Reader
}

// newScraper returns a scraper that sends opts' user agent and reads at
// most opts.BodyLimit bytes of a body.
func newScraper(opts Options) *scraper {
	return &scraper{bodyLimit: opts.BodyLimit, userAgent: opts.UserAgent}
}

// schedule is how often and how long every target is scraped, with the
// request headers that say so. A loop takes a copy when it starts and
// keeps it: a new schedule restarts the loops.
type schedule struct {
	interval, timeout time.Duration
	header            http.Header // every request's headers; each request gets a copy
}

// schedule returns the schedule for interval and timeout.
func (s *scraper) schedule(interval, timeout time.Duration) schedule {
	return schedule{interval: interval, timeout: timeout, header: http.Header{
		"Accept":                              {acceptHeader},
		"Accept-Encoding":                     {"gzip"},
		"User-Agent":                          {s.userAgent},
		"X-Prometheus-Scrape-Timeout-Seconds": {strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64)},
	}}
}

// scrape GETs url with client and header and returns the body and the
// response's Content-Type. It asks for gzip and inflates the body itself,
// as Prometheus does, because prometheus/common's transports leave
// compression to the caller; body_size_limit applies to the inflated
// body. The error is a *scrapeError.
//
// The body is in a buffer borrowed from bufs, which the caller gives back.
// It is borrowed only once a 2xx response is in, so that scrapes waiting
// on slow or hung targets hold no buffer; on error none is returned.
// sizeHint is the size of the target's previous body, to size the buffer
// when the response does not say.
func (s *scraper) scrape(ctx context.Context, client *http.Client, header http.Header, url string, bufs *buffers, sizeHint int) (*bytes.Buffer, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", &scrapeError{reasonConnection, fmt.Errorf("build request: %w", err)}
	}
	// One allocation for every value instead of one per header set.
	req.Header = header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", classify(err, reasonConnection)
	}
	defer func() {
		// Drain a little so the connection can be reused, but never read an
		// endless body to its end.
		_, _ = io.CopyN(io.Discard, resp.Body, 4096)
		_ = resp.Body.Close()
	}()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, "", &scrapeError{reasonHTTPStatus, fmt.Errorf("server returned HTTP status %s", resp.Status)}
	}
	var body io.Reader = resp.Body
	length := resp.ContentLength
	if enc := resp.Header.Get("Content-Encoding"); strings.EqualFold(enc, "gzip") || strings.EqualFold(enc, "x-gzip") {
		zr, err := s.gzipReader(resp.Body)
		if err != nil {
			return nil, "", classify(fmt.Errorf("read gzip body: %w", err), reasonRead)
		}
		defer s.gzip.Put(zr)
		body = zr
		length = -1 // the inflated length is not said
	} else if length > s.bodyLimit {
		return nil, "", s.tooLarge() // said up front: not worth reading
	}
	buf, err := s.read(body, length, sizeHint, bufs)
	if err != nil {
		return nil, "", err
	}
	return buf, resp.Header.Get("Content-Type"), nil
}

// read reads body, of length bytes when that is known (> 0), into a
// buffer borrowed from bufs. On error it gives the buffer back.
func (s *scraper) read(body io.Reader, length int64, sizeHint int, bufs *buffers) (*bytes.Buffer, error) {
	buf := bufs.body()
	switch {
	case length > 0:
		// One allocation of the right size instead of doubling up to
		// twice the body, which matters for bodies near the limit.
		buf.Grow(int(length) + bytes.MinRead)
	case sizeHint > 0:
		// Unknown length: start from what this target sent last time
		// (exporters' sizes are stable), as Prometheus sizes its buffers.
		buf.Grow(int(min(int64(sizeHint), s.bodyLimit+1)) + bytes.MinRead)
	}
	n, err := buf.ReadFrom(io.LimitReader(body, s.bodyLimit+1))
	if err == nil && n > s.bodyLimit {
		err = s.tooLarge()
	} else if err != nil {
		err = classify(fmt.Errorf("read body: %w", err), reasonRead)
	}
	if err != nil {
		bufs.putBody(buf)
		return nil, err
	}
	return buf, nil
}

func (s *scraper) tooLarge() *scrapeError {
	return &scrapeError{reasonBodyTooLarge, fmt.Errorf("body exceeds the limit of %d bytes (body_size_limit)", s.bodyLimit)}
}

// gzipReader returns a pooled gzip reader reset to r; the caller puts it
// back when done.
func (s *scraper) gzipReader(r io.Reader) (*gzip.Reader, error) {
	if zr, ok := s.gzip.Get().(*gzip.Reader); ok {
		if err := zr.Reset(r); err != nil {
			s.gzip.Put(zr)
			return nil, err
		}
		return zr, nil
	}
	return gzip.NewReader(r)
}

// classify names timeouts apart from other failures.
func classify(err error, fallback string) *scrapeError {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &scrapeError{reasonTimeout, err}
	}
	return &scrapeError{fallback, err}
}

// offset returns how long to wait until the target's first scrape. Each
// target gets a stable slot within the interval from a hash of its identity,
// aligned to the wall clock as Prometheus does, so load is spread and a
// restarted poller keeps its cadence.
func offset(now time.Time, interval time.Duration, parts ...string) time.Duration {
	h := fnv.New64a()
	for _, p := range parts {
		_, _ = h.Write([]byte(p))
		_, _ = h.Write([]byte{0})
	}
	slot := time.Duration(h.Sum64() % uint64(interval))
	d := slot - time.Duration(now.UnixNano()%int64(interval))
	if d < 0 {
		d += interval
	}
	return d
}
