package testenv

import (
	"flag"
	"strconv"
)

// WaitingTests raises -test.parallel, how many tests that called
// t.Parallel run at once, to n, unless the command line set -parallel. A
// package calls it from TestMain, before m.Run, when its parallel tests
// mostly wait on timers (ack waits, pings, scrape intervals, pin TTLs)
// rather than use the CPU: the default, one per CPU, would run them two at
// a time on a two-core machine and leave it idle.
func WaitingTests(n int) {
	if !flag.Parsed() {
		flag.Parse()
	}
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	f := flag.Lookup("test.parallel")
	if set || f == nil {
		return
	}
	if cur, err := strconv.Atoi(f.Value.String()); err == nil && cur >= n {
		return
	}
	_ = f.Value.Set(strconv.Itoa(n))
}
