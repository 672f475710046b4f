package loadtest

import (
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
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
	p("sample body %s bytes; %d CPUs, %s; transports %s (serving phase on NATS Streaming)", thousands(int64(len(o.Sample))), runtime.NumCPU(), runtime.Version(), strings.Join(o.Transports, ", "))
	p("")
	if !o.ServeOnly {
		pipelineReport(p, r)
	}
	if r.Serve != nil {
		serveReport(p, r)
	}
	return tw.Flush()
}

// pipelineReport writes the poller's and the Pushgateway path's figures:
// the floor and the raw PUTs, then each transport's in a column.
func pipelineReport(p func(string, ...any), r *Result) {
	o := r.Options
	p("poller\t\t")
	p("  floor: GET + snappy + synchronous NATS Streaming publish, %d in a loop\t%s CPU/scrape\t%s bytes/message", o.FloorScrapes, ms(r.FloorCPUPerScrape), thousands(int64(r.FloorBytes)))
	if !o.PollerOnly {
		p("Pushgateway alone, %d PUTs over %d groups\t\t", r.RawPUTs, o.Targets)
		p("  raw PUTs of the sample body, %d clients\t%.0f PUT/s\t%d PUTs%s", o.Concurrency, r.RawPUTRate, r.RawPUTs, timedOut(r.RawTimedOut))
		p("  raw PUTs of it as delimited protobuf (the receiver's push format)\t%.0f PUT/s\t", r.RawProtoPUTRate)
	}
	trs := r.Transports
	row := func(label string, cell func(t *TransportResult) string) {
		line := "  " + label
		for _, t := range trs {
			line += "\t" + cell(t)
		}
		p("%s\t", line)
	}
	header := "transports side by side"
	for _, t := range trs {
		header += "\t" + transportName(t.Transport)
	}
	p("%s\t", header)
	row(fmt.Sprintf("poller, scrapes over %s", o.Window), func(t *TransportResult) string { return fmt.Sprint(t.PollerScrapes) })
	row("poller CPU/scrape", func(t *TransportResult) string { return ms(t.PollerCPUPerScrape) })
	row("poller CPU/scrape, x the floor", func(t *TransportResult) string {
		return fmt.Sprintf("%.2fx", ratio(t.PollerCPUPerScrape, r.FloorCPUPerScrape))
	})
	row("poller CPU", func(t *TransportResult) string { return fmt.Sprintf("%.3f cores", t.PollerCores) })
	row("bytes per message (poller's message_bytes)", func(t *TransportResult) string { return thousands(int64(t.MessageBytes)) })
	row("poller peak RSS", func(t *TransportResult) string { return mib(t.PollerPeakRSS) })
	row("poller heap / goroutine stacks at the end", func(t *TransportResult) string {
		return mib(t.PollerHeap) + " / " + mib(t.PollerStacks)
	})
	if o.PollerOnly {
		return
	}
	row("delivery: pushes timed in the window", func(t *TransportResult) string { return fmt.Sprint(t.Pushes) })
	row("delivery: scrape to Pushgateway (request arrives), p50", func(t *TransportResult) string { return ms(t.LatencyP50) })
	row("delivery: scrape to Pushgateway, p99", func(t *TransportResult) string { return ms(t.LatencyP99) })
	row("delivery: scrape to Pushgateway, max", func(t *TransportResult) string { return ms(t.LatencyMax) })
	row("receiver CPU per push", func(t *TransportResult) string { return ms(t.ReceiverCPUPerMsg) })
	row("receiver peak RSS", func(t *TransportResult) string { return mib(t.ReceiverPeakRSS) })
	row("backlog: messages / groups", func(t *TransportResult) string {
		groups := o.Targets
		if t.Transport == TransportJetStream {
			groups = t.BacklogMessages // one message per subject
		}
		return fmt.Sprintf("%d / %d", t.BacklogMessages, groups)
	})
	row(fmt.Sprintf("receiver drain, %d workers", o.Concurrency), func(t *TransportResult) string {
		return fmt.Sprintf("%.0f msg/s", float64(t.Drained)/t.DrainSeconds)
	})
	row("  drained, in", func(t *TransportResult) string {
		return fmt.Sprintf("%d in %.2fs%s", t.Drained, t.DrainSeconds, timedOut(t.DrainTimedOut))
	})
	row("receiver pushes during the drain", func(t *TransportResult) string {
		return fmt.Sprintf("%.0f push/s (%d)", float64(t.DrainPushes)/t.DrainSeconds, t.DrainPushes)
	})
	row("  x the raw PUT rate", func(t *TransportResult) string {
		return fmt.Sprintf("%.2fx", float64(t.DrainPushes)/t.DrainSeconds/r.RawPUTRate)
	})
	row("receiver CPU per drained message", func(t *TransportResult) string { return ms(t.DrainCPUPerMsg) })
	row("dropped as stale / highest lag", func(t *TransportResult) string {
		return fmt.Sprintf("%.0f / %.1fs", t.DrainStale, t.DrainMaxLag)
	})
	row("receiver peak RSS (drain)", func(t *TransportResult) string { return mib(t.DrainPeakRSS) })
}

// transportName is a transport as the report's columns name it.
func transportName(t string) string {
	switch t {
	case TransportSTAN:
		return "NATS Streaming"
	case TransportJetStream:
		return "JetStream"
	}
	return t
}

// serveReport writes the serving phase's figures.
func serveReport(p func(string, ...any), r *Result) {
	o, s := r.Options, r.Serve
	p("serving %d groups (a receiver with serve_targets only, fed one scrape per group per %s)\t\t", o.Targets, o.Interval)
	p("  receiver holding alone, %d messages over %s\t%s CPU/message\t%.3f cores", s.HoldMessages, o.Interval, ms(s.HoldCPUPerMsg), s.HoldCores)
	p("  scrapes through /sd, %d over %s, Prometheus's headers\tp50 %s\tp99 %s, max %s", s.Scrapes, o.Window, ms(s.LatencyP50), ms(s.LatencyP99), ms(s.LatencyMax))
	p("  failed scrapes\t%d\t%s", total(s.Failed), reasons(s.Failed))
	p("  receiver CPU per served scrape (holding included)\t%s\t%.3f cores; %s per scrape less the holding", ms(s.CPUPerScrape), s.Cores, ms(s.ServingCPUPerScrape))
	p("  GET /sd, %d fetches\tmax %s\t%s bytes", s.SDFetches, ms(s.SDMax), thousands(int64(s.SDBytes)))
	p("  receiver held bytes (serve_held_bytes)\t%s\t", thousands(int64(s.HeldBytes)))
	p("  receiver peak RSS\t%s\t", mib(s.PeakRSS))
	if rs := s.Restart; rs != nil {
		restartReport(p, o.Targets, rs)
	}
	p("Pushgateway holding the same %d groups (consistency check %s)\t\t", o.Targets, onOff(o.PushgatewayCheck))
	p("  one PUT of the sample per group, %d clients\t%.0f PUT/s\t", o.Concurrency, s.PGWPUTRate)
	if s.PGWTimedOut {
		p("  GET /metrics as Prometheus asks for it\tover %s\t(phase timeout reached)", o.PhaseTimeout)
	} else {
		p("  GET /metrics as Prometheus asks for it, %d times\tmedian %s\tmax %s, %s bytes inflated", len(s.PGWGets), secs(quantile(s.PGWGets, 0.5)), secs(s.PGWGets[len(s.PGWGets)-1]), thousands(s.PGWBytes))
	}
	if pr := s.Prometheus; pr != nil {
		p("Prometheus %s scraping both, window %s\t\t", pr.Version, o.Window)
		p("  serve targets: scrape_duration_seconds, %d targets\tp50 %s\tp99 %s, max %s", pr.ServeTargets, ms(pr.ServeP50), ms(pr.ServeP99), ms(pr.ServeMax))
		p("  serve targets: up\t%d of %d scrapes up\t", pr.ServeUp, pr.ServeScrapes)
		p("  Pushgateway: scrape_duration_seconds\tp50 %s\tmax %s", secs(pr.PGWP50), secs(pr.PGWMax))
		p("  Pushgateway: up\t%d of %d scrapes up\t%s samples per scrape", pr.PGWUp, pr.PGWScrapes, thousands(int64(pr.PGWSamplesScraped)))
		p("  receiver CPU per scrape it answered (holding included)\t%s\t%.3f cores, %d scrapes; %s per scrape less the holding",
			ms(pr.ReceiverCPUPerScrape), pr.ReceiverCores, pr.ReceiverScrapes, ms(pr.ReceiverServingCPUPerScrape))
		p("  Prometheus CPU / peak RSS\t%.3f cores\t%s", pr.PrometheusCores, mib(pr.PeakRSS))
	}
}

// restartReport writes the lines of the receiver's restart.
func restartReport(p func(string, ...any), groups int, rs *RestartResult) {
	p("  restart (SIGKILL after the window, same durable, feeder on): /sd lists every group\t%s\t%d of %d listed; %s messages replayed, %s CPU to then",
		sinceStart(rs.SDReady), rs.Listed, groups, thousands(int64(rs.Replayed)), secs(rs.CPU))
	failures := "no failure"
	if n := total(rs.Failed); n > 0 {
		failures = fmt.Sprintf("%d failed (%s)", n, reasons(rs.Failed))
	}
	passes := fmt.Sprintf("%d passes, the first", rs.Passes)
	if rs.Passes == 1 {
		passes = "1 pass"
	}
	p("  restart: a scrape of every group answers 200\t%s\t%d of %d; %s %s, %d at a time; %s",
		sinceStart(rs.AllServed), rs.Served, groups, passes, secs(rs.FirstPass), restartScrapers, failures)
	p("  restart: receiver peak RSS\t%s\t", mib(rs.PeakRSS))
}

// sinceStart is a time after a restart, or says it was not reached.
func sinceStart(d time.Duration) string {
	if d == 0 {
		return "not reached"
	}
	return secs(d) + " after start"
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func secs(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// reasons lists failures by reason, sorted.
func reasons(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

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
