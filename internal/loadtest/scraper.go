package loadtest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery/targetgroup"
)

// Prometheus's scrape request, as Debian 12's Prometheus (2.42) sends it,
// captured from it: the formats it parses in its order of preference, and
// (set in fetchTo) gzip and the scrape timeout.
const (
	promAcceptHeader = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
	promUserAgent    = "Prometheus/2.42.0+ds"
)

// scraper plays the central Prometheus against a receiver's serving
// output: it reads the targets from /sd, then scrapes each once per
// interval from a loop of its own, at the offset Prometheus would give it,
// and reads every body to its end. Latencies and outcomes are recorded
// only while recording is on.
type scraper struct {
	sdURL             string
	interval, timeout time.Duration
	wantBytes         int64 // a whole body of the sample
	client            *http.Client

	recording atomic.Bool
	mu        sync.Mutex
	lat       []time.Duration // scrapes answered 200 with the whole body
	failed    map[string]int  // other outcomes, by a bounded reason
	sdLat     []time.Duration
	sdBytes   int
	sdErr     error
}

func newScraper(sdURL string, interval time.Duration, wantBytes int64) *scraper {
	return &scraper{
		sdURL:     sdURL,
		interval:  interval,
		timeout:   scrapeTimeout(interval),
		wantBytes: wantBytes,
		failed:    map[string]int{},
		client:    newPromClient(),
	}
}

// scrapeTimeout is Prometheus's default scrape_timeout at interval.
func scrapeTimeout(interval time.Duration) time.Duration {
	return min(interval, 10*time.Second)
}

// newPromClient returns a client with Prometheus's transport (common/config's
// NewRoundTripperFromConfig): one per scrape pool, keep-alive, many idle
// connections per host (every target here is the same host), and no
// transparent decompression: the scrape asks for gzip itself. The caller
// closes its idle connections when done.
func newPromClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        20000,
		MaxIdleConnsPerHost: 1000,
		DisableCompression:  true,
		IdleConnTimeout:     5 * time.Minute,
	}}
}

// targets fetches /sd and returns the scrape URL of every target.
func (s *scraper) targets(ctx context.Context) ([]string, error) {
	body, err := s.fetchSD(ctx)
	if err != nil {
		return nil, err
	}
	return s.parseSD(body)
}

// fetchSD returns the body of /sd, or an error for anything but 200.
func (s *scraper) fetchSD(ctx context.Context) ([]byte, error) {
	var body bytes.Buffer
	if err := get(ctx, s.sdURL, &body); err != nil {
		return nil, err
	}
	return body.Bytes(), nil
}

// parseSD returns the scrape URL of every target of an /sd body, decoded
// as Prometheus's http_sd decodes it and built as Prometheus builds it
// from __scheme__, the address, __metrics_path__ and the __param_ labels.
func (s *scraper) parseSD(body []byte) ([]string, error) {
	var groups []targetgroup.Group
	if err := json.Unmarshal(body, &groups); err != nil {
		return nil, fmt.Errorf("GET %s: %w", s.sdURL, err)
	}
	var urls []string
	for _, g := range groups {
		scheme, path := string(g.Labels[model.SchemeLabel]), string(g.Labels[model.MetricsPathLabel])
		if scheme == "" {
			scheme = "http"
		}
		q := url.Values{}
		for k, v := range g.Labels {
			if name, ok := strings.CutPrefix(string(k), model.ParamLabelPrefix); ok {
				q.Set(name, string(v))
			}
		}
		for _, t := range g.Targets {
			u := url.URL{Scheme: scheme, Host: string(t[model.AddressLabel]), Path: path, RawQuery: q.Encode()}
			urls = append(urls, u.String())
		}
	}
	return urls, nil
}

// run scrapes every URL once per interval, and /sd once per interval as an
// http_sd_config with that refresh_interval does, until ctx ends. The
// target set stays the one it is given: the groups do not change during a
// run, and later /sd answers are only timed.
func (s *scraper) run(ctx context.Context, urls []string) {
	var wg sync.WaitGroup
	// Prometheus's jitter seed comes from its external labels and
	// hostname; any constant spreads the targets the same way.
	seed := fnvHash("prometheus-streams bench")
	for _, u := range urls {
		wg.Go(func() { s.loop(ctx, u, prometheusOffset(time.Now(), s.interval, fnvHash(u)^seed), s.scrape) })
	}
	wg.Go(func() { s.loop(ctx, s.sdURL, 0, s.refreshSD) })
	wg.Wait()
	s.client.CloseIdleConnections()
}

// loop runs do at wait from now and every interval after, as Prometheus's
// scrape loop does, until ctx ends.
func (s *scraper) loop(ctx context.Context, u string, wait time.Duration, do func(context.Context, string)) {
	select {
	case <-ctx.Done():
		return
	case <-time.After(wait):
	}
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		do(ctx, u)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// prometheusOffset is when Prometheus first scrapes a target whose hash
// (xor the jitter seed) is h (scrape/target.go, Target.offset): the next
// moment whose phase in the interval, counted from the Unix epoch, is h
// modulo the interval. A hash spreads the targets over the interval as
// Prometheus does, bunched here and there, not evenly.
func prometheusOffset(now time.Time, interval time.Duration, h uint64) time.Duration {
	base := int64(interval) - now.UnixNano()%int64(interval)
	next := base + int64(h%uint64(interval))
	if next > int64(interval) {
		next -= int64(interval)
	}
	return time.Duration(next)
}

func fnvHash(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// scrape GETs u as Prometheus does and records the outcome, unless
// recording was off when it started or ctx ended during it: a scrape cut
// off by the end of the run did not time out.
func (s *scraper) scrape(ctx context.Context, u string) {
	record := s.recording.Load()
	lat, reason := s.scrapeOnce(ctx, u)
	if !record || ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if reason != "" {
		s.failed[reason]++
		return
	}
	s.lat = append(s.lat, lat)
}

// scrapeOnce GETs u as Prometheus does, within the scrape timeout, and
// reads the body to its end. It returns the latency, from the request to
// the body's last byte, or why the scrape failed: a bounded reason, also
// for a 200 whose body is not the sample's length.
func (s *scraper) scrapeOnce(ctx context.Context, u string) (time.Duration, string) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	n, reason := fetchTo(ctx, s.client, s.timeout, u, io.Discard)
	lat := time.Since(start)
	if reason == "" && n != s.wantBytes {
		reason = "body of another size than the sample's"
	}
	return lat, reason
}

// fetchTo GETs u with client as Prometheus does, announcing timeout as
// its scrape timeout (ctx is what ends the request), copies the body
// (inflated) to w and returns its length, or why the scrape failed: a
// bounded reason.
func fetchTo(ctx context.Context, client *http.Client, timeout time.Duration, u string, w io.Writer) (int64, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "request"
	}
	req.Header.Set("Accept", promAcceptHeader)
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("User-Agent", promUserAgent)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64))
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, "timeout"
		}
		return 0, "connection error"
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		discard(resp.Body)
		return 0, "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return 0, "bad gzip"
		}
		body = zr
	}
	n, err := io.Copy(w, body)
	if err != nil {
		if ctx.Err() != nil {
			return n, "timeout"
		}
		return n, "body cut short"
	}
	return n, ""
}

// refreshSD times one GET of /sd, as Prometheus's refresh reads it.
func (s *scraper) refreshSD(ctx context.Context, u string) {
	record := s.recording.Load()
	start := time.Now()
	var n countingWriter
	err := get(ctx, u, &n)
	lat := time.Since(start)
	if !record || ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.sdErr = err
		return
	}
	s.sdLat, s.sdBytes = append(s.sdLat, lat), int(n)
}

// results returns the scrape latencies sorted, the failures and the /sd
// fetches recorded so far.
func (s *scraper) results() (lat []time.Duration, failed map[string]int, sd []time.Duration, sdBytes int, sdErr error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lat, sd = slices.Clone(s.lat), slices.Clone(s.sdLat)
	slices.Sort(lat)
	slices.Sort(sd)
	return lat, maps.Clone(s.failed), sd, s.sdBytes, s.sdErr
}

// countingWriter counts the bytes written to it.
type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// patternCounter counts the occurrences of pattern in what is written to
// it, also across writes: it keeps the tail of the last write that could
// start one.
type patternCounter struct {
	pattern []byte
	n       int
	tail    []byte
}

func (c *patternCounter) Write(p []byte) (int, error) {
	buf := append(c.tail, p...)
	c.n += bytes.Count(buf, c.pattern)
	keep := min(len(buf), len(c.pattern)-1)
	c.tail = append(c.tail[:0], buf[len(buf)-keep:]...)
	return len(p), nil
}
