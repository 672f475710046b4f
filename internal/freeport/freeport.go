// Package freeport picks loopback ports for servers started later, or
// started again on the same port, by a test or by the load harness, away
// from the ports the kernel hands out to servers started on port 0.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Pick returns a loopback port nothing listens on. The kernel hands out
// ports from its ephemeral range (net.ipv4.ip_local_port_range,
// 32768-60999 by default) to every server started on port 0 and every
// outgoing connection, so a port it gave a moment ago can be taken again at
// once by a server started beside the caller's. Pick chooses one at random
// below that range, where only a server asking for that very port would
// take it, and never the same one twice in a process. Where the range
// leaves no room below it, it asks the kernel for one.
func Pick() (int, error) {
	ports.mu.Lock()
	defer ports.mu.Unlock()
	if ports.given == nil {
		ports.given = map[int]bool{}
		ports.lo, ports.hi = belowEphemeral()
	}
	for range 1000 {
		p := 0 // the kernel's choice
		if ports.hi > ports.lo {
			p = ports.lo + rand.IntN(ports.hi-ports.lo)
		}
		if ports.given[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue // in use
		}
		p = ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		if ports.given[p] {
			continue
		}
		ports.given[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("no free loopback port in [%d, %d) after 1000 tries", ports.lo, ports.hi)
}

// ports are those Pick gave in this process, and the range it picks from.
// It is package state, unlike anywhere else in the tree, because "never the
// same port twice in a process" is a promise about the process: the tests
// of a package running in parallel, or the harness's daemons, share it.
var ports struct {
	mu     sync.Mutex
	given  map[int]bool
	lo, hi int
}

// belowEphemeral returns up to 16384 ports just below the kernel's
// ephemeral range and above 1024, or an empty range where the range cannot
// be read or leaves fewer than 4096 ports below it.
func belowEphemeral() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	var first, last int
	if _, err := fmt.Sscan(strings.TrimSpace(string(b)), &first, &last); err != nil {
		return 0, 0
	}
	hi = first
	lo = max(hi-16384, 1025)
	if hi-lo < 4096 {
		return 0, 0
	}
	return lo, hi
}
