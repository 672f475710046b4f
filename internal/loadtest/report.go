package loadtest

import (
	"fmt"
	"io"
	"runtime"
	"text/tabwriter"
	"time"
)

// Report writes r as the table `prometheus-streams bench` prints.
func Report(w io.Writer, r *Result) error {
	o := r.Options
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { _, _ = fmt.Fprintf(tw, format+"\n", args...) }
	p("prometheus-streams bench: %d targets every %s, compression %s, Pushgateway consistency check %s, push concurrency %d",
		o.Targets, o.Interval, o.Compression, onOff(o.PushgatewayCheck), o.Concurrency)
	p("sample body %s bytes; %d CPUs, %s", thousands(int64(len(o.Sample))), runtime.NumCPU(), runtime.Version())
	p("")
	p("poller\t\t")
	p("  floor: GET + snappy + synchronous publish, %d in a loop\t%s CPU/scrape\t%s bytes/message", o.FloorScrapes, ms(r.FloorCPUPerScrape), thousands(int64(r.FloorBytes)))
	p("  poller, %d scrapes over %s\t%s CPU/scrape\t%.2fx the floor", r.PollerScrapes, o.Window, ms(r.PollerCPUPerScrape), ratio(r.PollerCPUPerScrape, r.FloorCPUPerScrape))
	p("  poller CPU\t%.3f cores\t", r.PollerCores)
	p("  bytes per message (poller's message_bytes)\t%s\t", thousands(int64(r.MessageBytes)))
	p("  poller peak RSS\t%s\theap in use %s, goroutine stacks %s at the end", mib(r.PollerPeakRSS), mib(r.PollerHeap), mib(r.PollerStacks))
	if o.PollerOnly {
		return tw.Flush()
	}
	p("delivery, window\t\t")
	p("  scrape to Pushgateway (request arrives), %d pushes\tp50 %s\tp99 %s, max %s", r.Pushes, ms(r.LatencyP50), ms(r.LatencyP99), ms(r.LatencyMax))
	p("  receiver CPU per push\t%s\t", ms(r.ReceiverCPUPerMsg))
	p("  receiver peak RSS\t%s\t", mib(r.ReceiverPeakRSS))
	p("backlog of %d messages over %d groups\t\t", r.BacklogMessages, o.Targets)
	p("  raw PUTs of the sample body, %d clients\t%.0f PUT/s\t%d PUTs%s", o.Concurrency, r.RawPUTRate, r.RawPUTs, timedOut(r.RawTimedOut))
	p("  raw PUTs of it as delimited protobuf (the receiver's push format)\t%.0f PUT/s\t", r.RawProtoPUTRate)
	msgRate := float64(r.Drained) / r.DrainSeconds
	pushRate := float64(r.DrainPushes) / r.DrainSeconds
	p("  receiver drain, %d workers\t%.0f msg/s\t%d of %d messages in %.2fs%s", o.Concurrency, msgRate, r.Drained, r.BacklogMessages, r.DrainSeconds, timedOut(r.DrainTimedOut))
	p("  receiver pushes during the drain\t%.0f push/s\t%.2fx the raw PUT rate (%d pushes)", pushRate, pushRate/r.RawPUTRate, r.DrainPushes)
	p("  receiver CPU per drained message\t%s\t", ms(r.DrainCPUPerMsg))
	p("  dropped as stale / highest lag\t%.0f\t%.1fs", r.DrainStale, r.DrainMaxLag)
	p("  receiver peak RSS (drain)\t%s\t", mib(r.DrainPeakRSS))
	return tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func timedOut(t bool) string {
	if t {
		return " (phase timeout reached)"
	}
	return ""
}

// thousands formats n with commas, as the docs write figures.
func thousands(n int64) string {
	s := fmt.Sprint(n)
	out := make([]byte, 0, len(s)+len(s)/3)
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[0] != '-' {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}
