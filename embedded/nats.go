package embedded

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	natsd "github.com/nats-io/nats-server/v2/server"
)

// NATSOptions configure StartNATS.
type NATSOptions struct {
	Host string // default DefaultHost
	Port int    // 0 = a free port
	// StoreDir is JetStream's file store; "" makes a temporary directory
	// that Shutdown removes. A StoreDir of the caller's survives Restart
	// and Shutdown.
	StoreDir string
	// ServerName names the server (needed to tell servers apart in a
	// topology); "" lets the server pick one.
	ServerName string
	// Domain is the JetStream domain, "" for none.
	Domain string
	Logger *slog.Logger // server logs go here at debug level; nil discards them
	// Configure, when set, adjusts the server's options before it starts:
	// leaf nodes, accounts, permissions, for tests of topologies.
	Configure func(*natsd.Options)
}

// NATS is an in-process nats-server with JetStream enabled. Its methods are
// safe for concurrent use.
type NATS struct {
	opts    NATSOptions // Port resolved after the first start
	tempDir bool        // StoreDir is ours to remove

	mu  sync.Mutex
	srv *natsd.Server // nil after Shutdown
}

// StartNATS starts the server and returns once it accepts clients and
// JetStream is ready.
func StartNATS(opts NATSOptions) (*NATS, error) {
	if opts.Host == "" {
		opts.Host = DefaultHost
	}
	n := &NATS{opts: opts}
	if opts.StoreDir == "" {
		dir, err := os.MkdirTemp("", "prometheus-streams-jetstream-")
		if err != nil {
			return nil, fmt.Errorf("jetstream store directory: %w", err)
		}
		n.opts.StoreDir, n.tempDir = dir, true
	}
	if err := n.start(); err != nil {
		if n.tempDir {
			_ = os.RemoveAll(n.opts.StoreDir)
		}
		return nil, err
	}
	return n, nil
}

func (n *NATS) start() error {
	port := n.opts.Port
	if port == 0 {
		port = natsd.RANDOM_PORT
	} else if err := probeListen(n.opts.Host, port); err != nil {
		return err
	}
	o := &natsd.Options{
		ServerName:         n.opts.ServerName,
		Host:               n.opts.Host,
		Port:               port,
		NoSigs:             true, // signals belong to our main, not to a library
		JetStream:          true,
		JetStreamDomain:    n.opts.Domain,
		StoreDir:           n.opts.StoreDir,
		JetStreamMaxMemory: 256 << 20,
		JetStreamMaxStore:  8 << 30,
	}
	if n.opts.Configure != nil {
		n.opts.Configure(o)
	}
	srv, err := natsd.NewServer(o)
	if err != nil {
		return fmt.Errorf("nats-server on %s: %w", net.JoinHostPort(n.opts.Host, strconv.Itoa(n.opts.Port)), err)
	}
	if n.opts.Logger != nil {
		srv.SetLoggerV2(slogAdapter{l: n.opts.Logger}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("nats-server on %s: not ready for connections after 10s", net.JoinHostPort(n.opts.Host, strconv.Itoa(n.opts.Port)))
	}
	n.opts.Port = srv.Addr().(*net.TCPAddr).Port
	n.srv = srv
	return nil
}

// URL is the client URL, nats://host:port.
func (n *NATS) URL() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return "nats://" + net.JoinHostPort(n.opts.Host, strconv.Itoa(n.opts.Port))
}

// Server is the running server, nil after Shutdown.
func (n *NATS) Server() *natsd.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.srv
}

// Shutdown stops the server and removes a temporary store. It is safe to
// call more than once.
func (n *NATS) Shutdown() {
	n.stop()
	if n.tempDir {
		_ = os.RemoveAll(n.opts.StoreDir)
	}
}

func (n *NATS) stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// Restart stops the server and starts it again on the same port with the
// same store, as a server restart in production does.
func (n *NATS) Restart() error {
	n.stop()
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.start()
}
