package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/golang/snappy"
	stan "github.com/nats-io/stan.go"
)

// FloorOptions configure RunFloor.
type FloorOptions struct {
	// URLs are scraped in turn.
	URLs []string
	// NATSURL and ClusterID name the NATS Streaming server; Channel is
	// published to (not the pipeline's, so the receiver never sees these).
	NATSURL, ClusterID, Channel string
	// Scrapes is how many scrapes are measured, after a tenth as many to
	// warm up connections and buffers.
	Scrapes int
}

// FloorResult is what the floor's process measured of itself.
type FloorResult struct {
	Scrapes int `json:"scrapes"`
	// CPUSeconds is the process's user and system CPU over the measured
	// scrapes, garbage collection included, as for the poller.
	CPUSeconds float64 `json:"cpu_seconds"`
	// Bytes is the total of the published messages.
	Bytes int64 `json:"bytes"`
}

// RunFloor is the least any poller must do per scrape, in a tight loop: an
// HTTP GET (with Go's default transport, which asks for gzip and inflates),
// snappy of the body, and a synchronous NATS Streaming publish. It runs in a
// process of its own, so its CPU is measured as the poller's is.
func RunFloor(ctx context.Context, opts FloorOptions) (FloorResult, error) {
	if len(opts.URLs) == 0 || opts.Scrapes <= 0 {
		return FloorResult{}, errors.New("floor: needs URLs and a positive number of scrapes")
	}
	sc, err := stan.Connect(opts.ClusterID, "bench-floor-"+strconv.Itoa(os.Getpid()), stan.NatsURL(opts.NATSURL))
	if err != nil {
		return FloorResult{}, fmt.Errorf("floor: connect to %s: %w", opts.NATSURL, err)
	}
	defer func() { _ = sc.Close() }()
	client := &http.Client{Timeout: 10 * time.Second}
	var body bytes.Buffer
	var block []byte
	scrape := func(i int) (int, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, opts.URLs[i%len(opts.URLs)], nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		body.Reset()
		_, err = body.ReadFrom(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return 0, err
		}
		block = snappy.Encode(block[:cap(block)], body.Bytes())
		return len(block), sc.Publish(opts.Channel, block)
	}
	for i := range max(opts.Scrapes/10, 1) {
		if _, err := scrape(i); err != nil {
			return FloorResult{}, fmt.Errorf("floor: warm-up scrape: %w", err)
		}
	}
	before, err := cpuSelf()
	if err != nil {
		return FloorResult{}, err
	}
	res := FloorResult{Scrapes: opts.Scrapes}
	for i := range opts.Scrapes {
		n, err := scrape(i)
		if err != nil {
			return FloorResult{}, fmt.Errorf("floor: scrape %d: %w", i, err)
		}
		res.Bytes += int64(n)
	}
	after, err := cpuSelf()
	if err != nil {
		return FloorResult{}, err
	}
	res.CPUSeconds = after - before
	return res, nil
}

// cpuSelf is this process's user plus system CPU time in seconds.
func cpuSelf() (float64, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return tvSeconds(ru.Utime) + tvSeconds(ru.Stime), nil
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// discard reads r to its end; used for bodies nobody needs.
func discard(r io.Reader) { _, _ = io.Copy(io.Discard, r) }

// runFloorProcess runs the floor's command and reads the FloorResult it
// prints as JSON.
func runFloorProcess(ctx context.Context, exe string, args []string) (FloorResult, error) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return FloorResult{}, fmt.Errorf("floor: %w: %s", err, bytes.TrimSpace(errOut.Bytes()))
	}
	var res FloorResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return FloorResult{}, fmt.Errorf("floor: read its result %q: %w", out.String(), err)
	}
	if res.Scrapes <= 0 {
		return FloorResult{}, fmt.Errorf("floor: no scrapes measured: %q", out.String())
	}
	return res, nil
}
