// Package embedded runs a real NATS Streaming server and a real Pushgateway
// in-process on loopback. The demo command and the tests use it so that they
// exercise the same server code that production talks to.
package embedded

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"sync"

	natsd "github.com/nats-io/nats-server/v2/server"
	stand "github.com/nats-io/nats-streaming-server/server"
	"github.com/nats-io/nats-streaming-server/stores"
	"github.com/nats-io/nats.go"
)

const (
	// DefaultClusterID is the NATS Streaming cluster ID used when
	// StreamingOptions.ClusterID is empty.
	DefaultClusterID = "prometheus-streams"
	// DefaultHost is the loopback address both servers bind by default.
	DefaultHost = "127.0.0.1"
)

// StreamingOptions configure StartStreaming.
type StreamingOptions struct {
	ClusterID string       // default DefaultClusterID
	Host      string       // default DefaultHost
	Port      int          // 0 = a free port
	StoreDir  string       // "" = memory store; else a file store in this dir (survives Restart)
	Logger    *slog.Logger // server logs go here at debug level; nil discards them

	// Authentication clients must pass, for tests of it: User (with
	// Password), NKeyPublic (an nkey user's public key, "U..."), both, or
	// Token alone. nats-server ignores a token beside users, so
	// StartStreaming refuses that combination. Operator instead switches
	// the server to JWT (operator) mode, where only .creds files work.
	User, Password string
	Token          string
	NKeyPublic     string
	Operator       *OperatorOptions

	// TLS, when set, makes the NATS server require TLS with this server
	// side configuration. It must hold Certificates (GetCertificate is not
	// supported: the streaming layer pins the first one, see
	// internalTLS). With ClientAuth requiring verified client
	// certificates, that certificate must also be valid for client
	// authentication, as the streaming layer presents it too.
	TLS *tls.Config
}

// OperatorOptions run the NATS server in operator (JWT) mode with an
// in-memory account resolver.
type OperatorOptions struct {
	// TrustedKey is the operator's public key ("O..."); accounts must be
	// signed by it.
	TrustedKey string
	// Accounts maps account public keys ("A...") to their JWTs.
	Accounts map[string]string
	// Credentials is the .creds file the streaming layer itself connects
	// to its NATS server with; its user must be in one of Accounts, the
	// same account as the clients.
	Credentials string
}

// Streaming is an in-process NATS Streaming server (nats-streaming-server as
// a library, embedding its NATS server). Its methods are safe for concurrent
// use.
type Streaming struct {
	opts StreamingOptions // defaults applied; Port resolved after the first start

	mu  sync.Mutex
	srv *stand.StanServer // nil after Shutdown
	url string
}

// StartStreaming starts the server and returns once it accepts clients.
func StartStreaming(opts StreamingOptions) (*Streaming, error) {
	if opts.ClusterID == "" {
		opts.ClusterID = DefaultClusterID
	}
	if opts.Host == "" {
		opts.Host = DefaultHost
	}
	s := &Streaming{opts: opts}
	if err := s.start(); err != nil {
		return nil, err
	}
	return s, nil
}

// start runs the server with s.opts and, on the first start with Port 0,
// pins the port it got so Restart comes back on the same address.
// Callers hold s.mu or own s exclusively.
func (s *Streaming) start() error {
	sOpts := stand.GetDefaultOptions()
	sOpts.ID = s.opts.ClusterID
	// With no CustomLogger and EnableLogging false the server does not
	// log at all; with one, everything goes through slogAdapter.
	if s.opts.Logger != nil {
		sOpts.CustomLogger = slogAdapter{l: s.opts.Logger}
	}
	if s.opts.StoreDir != "" {
		sOpts.StoreType = stores.TypeFile
		sOpts.FilestoreDir = s.opts.StoreDir
	} else {
		sOpts.StoreType = stores.TypeMemory
	}

	port := s.opts.Port
	if port == 0 {
		// nats-server treats 0 as "the default port 4222"; -1 asks
		// the kernel for a free one.
		port = natsd.RANDOM_PORT
	} else if err := probeListen(s.opts.Host, port); err != nil {
		return err
	}
	nOpts := &natsd.Options{
		Host:   s.opts.Host,
		Port:   port,
		NoLog:  true,
		NoSigs: true, // signals belong to our main, not to a library
	}
	if err := s.configureAuth(sOpts, nOpts); err != nil {
		return err
	}
	if s.opts.TLS != nil {
		ctls, err := internalTLS(s.opts.TLS)
		if err != nil {
			return err
		}
		nOpts.TLSConfig = s.opts.TLS.Clone()
		sOpts.NATSClientOpts = append(sOpts.NATSClientOpts, nats.Secure(ctls))
	}

	srv, err := stand.RunServerWithOpts(sOpts, nOpts)
	if err != nil {
		return fmt.Errorf("start nats streaming on %s: %w",
			net.JoinHostPort(s.opts.Host, strconv.Itoa(s.opts.Port)), err)
	}
	clientURL := srv.ClientURL()
	u, err := url.Parse(clientURL)
	if err != nil {
		srv.Shutdown()
		return fmt.Errorf("parse nats streaming client url %q: %w", clientURL, err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		srv.Shutdown()
		return fmt.Errorf("parse nats streaming client url %q: %w", clientURL, err)
	}
	s.opts.Port = p
	s.srv = srv
	s.url = clientURL
	return nil
}

// configureAuth sets up the NATS server's client authentication and the
// credentials of the streaming layer's own connections to it (the
// streaming server is a NATS client of its embedded server and must pass
// the same checks).
func (s *Streaming) configureAuth(sOpts *stand.Options, nOpts *natsd.Options) error {
	o := s.opts
	switch {
	case o.Operator != nil:
		if o.User != "" || o.Token != "" || o.NKeyPublic != "" {
			return errors.New("start nats streaming: Operator excludes User, Token and NKeyPublic")
		}
		res := &natsd.MemAccResolver{}
		for pub, jwt := range o.Operator.Accounts {
			if err := res.Store(pub, jwt); err != nil {
				return fmt.Errorf("start nats streaming: store account %s: %w", pub, err)
			}
		}
		nOpts.TrustedKeys = []string{o.Operator.TrustedKey}
		nOpts.AccountResolver = res
		sOpts.NATSCredentials = o.Operator.Credentials
	case o.Token != "":
		if o.User != "" || o.NKeyPublic != "" {
			return errors.New("start nats streaming: Token excludes User and NKeyPublic (nats-server would ignore it)")
		}
		// The streaming layer uses the server's Authorization itself.
		nOpts.Authorization = o.Token
	case o.NKeyPublic != "":
		// The streaming layer cannot sign with the test's nkey (it has no
		// seed), so it gets a user of its own beside it.
		pass, err := randomSecret()
		if err != nil {
			return err
		}
		const internalUser = "_embedded_streaming"
		nOpts.Nkeys = []*natsd.NkeyUser{{Nkey: o.NKeyPublic}}
		nOpts.Users = []*natsd.User{{Username: internalUser, Password: pass}}
		if o.User != "" {
			nOpts.Users = append(nOpts.Users, &natsd.User{Username: o.User, Password: o.Password})
		}
		sOpts.Username, sOpts.Password = internalUser, pass
	case o.User != "":
		// The streaming layer uses the server's Username and Password.
		nOpts.Username, nOpts.Password = o.User, o.Password
	}
	return nil
}

// randomSecret returns a password nobody can guess or needs to know.
func randomSecret() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("start nats streaming: internal password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// internalTLS is the client side TLS of the streaming layer's connections
// to its own NATS server. That server is in this process, on loopback, and
// its CA is the caller's business: rather than needing it, the connection
// accepts exactly the certificate the server presents.
func internalTLS(server *tls.Config) (*tls.Config, error) {
	if len(server.Certificates) == 0 || len(server.Certificates[0].Certificate) == 0 {
		return nil, errors.New("start nats streaming: TLS needs Certificates")
	}
	own := server.Certificates[0].Certificate[0]
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done by VerifyConnection: pinning, not a chain.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, own) {
				return errors.New("embedded nats server presented a certificate that is not its own")
			}
			return nil
		},
		// For a server that requires client certificates.
		Certificates: server.Certificates,
	}, nil
}

// probeListen fails fast on a busy port. The library would instead wait out
// a fixed 10s and then report no cause: nats-server's accept loop records
// the listen error, but readyForConnections polls until its deadline
// regardless of it. A port taken between probe and start still gets that
// slow path; this only makes the common case quick and explicit.
func probeListen(host string, port int) error {
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	ln, err := net.Listen("tcp", hp)
	if err != nil {
		return fmt.Errorf("start nats streaming on %s: %w", hp, err)
	}
	if err := ln.Close(); err != nil {
		return fmt.Errorf("start nats streaming on %s: release probe: %w", hp, err)
	}
	return nil
}

// URL is the client URL, nats://127.0.0.1:PORT. It stays the same across
// Restart.
func (s *Streaming) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// ClusterID is the NATS Streaming cluster ID clients must connect with.
// It needs no lock: ClusterID is set before the first start and never
// changes.
func (s *Streaming) ClusterID() string {
	return s.opts.ClusterID
}

// Shutdown stops the server and waits for its goroutines. It is idempotent.
func (s *Streaming) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv = nil
	}
}

// Restart stops the server and starts it again on the same port with the
// same store: a file store keeps its channels and durables, a memory store
// comes back empty. Connected clients see a disconnect, as in a real outage.
// It also starts a server that was Shutdown.
func (s *Streaming) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv = nil
	}
	if err := s.start(); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	return nil
}

// slogAdapter is the NATS server Logger interface on top of slog. Every
// message goes out at debug level (the servers are scaffolding, their
// notices are noise next to our own logs); the server's own severity is
// kept in the "severity" attribute. Fatalf must not exit: the library calls
// it for a failed start and then returns the error to us.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) log(severity, format string, v ...any) {
	// Checked first: formatting every server message is not free.
	if !a.l.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	a.l.Debug(fmt.Sprintf(format, v...), "severity", severity, "component", "nats-streaming")
}

func (a slogAdapter) Noticef(format string, v ...any) { a.log("notice", format, v...) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.log("warn", format, v...) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.log("fatal", format, v...) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.log("error", format, v...) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.log("debug", format, v...) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.log("trace", format, v...) }

// ensure the adapter keeps satisfying the interface the library expects.
var _ natsd.Logger = slogAdapter{}
