package stream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/choria-io/prometheus-streams/config"
)

// natsAuth is what both transports need to reach NATS: the servers, TLS
// and at most one way of authenticating. The files it names are read on
// every connection attempt, so one put in place (or fixed) later is
// picked up without a restart.
type natsAuth struct {
	URLs []string
	TLS  *tls.Config
	// Credentials is a .creds file, NKeySeedFile a file with an nkey
	// seed; User (with Password) and Token are the other methods.
	Credentials, NKeySeedFile, User, Password, Token string
	// section is the configuration section these come from
	// (poller_stream, receiver_stream), which errors point at.
	section string
}

// check refuses more than one authentication method, and a password
// without a user.
func (a natsAuth) check() error {
	methods := 0
	for _, v := range []string{a.Credentials, a.NKeySeedFile, a.User, a.Token} {
		if v != "" {
			methods++
		}
	}
	if methods > 1 {
		return errors.New("stream: set only one of credentials, nkey seed file, user and token")
	}
	if a.Password != "" && a.User == "" {
		return errors.New("stream: password requires user")
	}
	return nil
}

// dial connects to NATS as name, each attempt bounded by timeout. A
// connection that drops is made again by nats.go, every reconnectWait and
// without end: the caller decides when a session is lost. handlers are the
// caller's (reconnect, disconnect, errors). A failed connect is explained
// by connectError.
func (a natsAuth) dial(name string, timeout, reconnectWait time.Duration, handlers ...nats.Option) (*nats.Conn, error) {
	opts, err := a.options()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		nats.Name(name),
		nats.Timeout(timeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
	)
	nc, err := nats.Connect(strings.Join(a.URLs, ","), append(opts, handlers...)...)
	if err != nil {
		return nil, a.connectError(err)
	}
	return nc, nil
}

// options are the nats.Options for TLS and authentication.
func (a natsAuth) options() ([]nats.Option, error) {
	var opts []nats.Option
	if a.TLS != nil {
		opts = append(opts, nats.Secure(a.TLS))
	}
	auth, err := a.authOption()
	if err != nil {
		return nil, err
	}
	if auth != nil {
		opts = append(opts, auth)
	}
	return opts, nil
}

// authOption returns the nats.Option for the configured authentication, or
// nil for none.
func (a natsAuth) authOption() (nats.Option, error) {
	o := a
	switch {
	case o.Credentials != "":
		// nats.go reads the file during each handshake (after expanding
		// ~ and $VARS); connectError names it when that fails.
		return nats.UserCredentials(o.Credentials), nil
	case o.NKeySeedFile != "":
		// Read on every attempt, so a seed file provisioned after start
		// is picked up.
		opt, err := nats.NkeyOptionFromSeed(o.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("nkey seed file %s of %s: %w", o.NKeySeedFile, a.section, err)
		}
		return opt, nil
	case o.User != "":
		return nats.UserInfo(o.User, o.Password), nil
	case o.Token != "":
		return nats.Token(o.Token), nil
	}
	return nil, nil
}

// connectError wraps a failed NATS connect with what to check. The bare
// errors of nats.go and crypto/tls ("nats: Authorization Violation") do not
// say which configuration keys are involved; the hint does.
func (a natsAuth) connectError(err error) error {
	if hint := a.connectHint(err); hint != "" {
		return fmt.Errorf("connect to nats %s: %s: %w", redactedURLs(a.URLs), hint, err)
	}
	return fmt.Errorf("connect to nats %s: %w", redactedURLs(a.URLs), err)
}

func (a natsAuth) connectHint(err error) string {
	var (
		verify      *tls.CertificateVerificationError
		unknownCA   x509.UnknownAuthorityError
		badHost     x509.HostnameError
		invalidCert x509.CertificateInvalidError
		notTLS      tls.RecordHeaderError
		opErr       *net.OpError
		pathErr     *fs.PathError
	)
	tlsKeys := "check tls ca, cert and key used by " + a.section
	if a.TLS == nil {
		// nats.go upgrades to TLS with the system roots when the server
		// requires it, so this can fail without any tls configured.
		tlsKeys = "the server requires TLS; set tls for " + a.section
	}
	switch {
	case errors.Is(err, nats.ErrAuthorization):
		return "authorization failed (check user/password, token, nkey or credentials of " + a.section + ")"
	case errors.Is(err, nats.ErrAuthExpired), errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		return "authentication expired or revoked (renew the credentials of " + a.section + ")"
	case errors.As(err, &pathErr):
		// The only file nats.go reads while connecting is the .creds file.
		return "cannot read the credentials file of " + a.section
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "the server does not offer TLS (check urls and tls of " + a.section + ")"
	case errors.As(err, &verify), errors.As(err, &unknownCA), errors.As(err, &badHost), errors.As(err, &invalidCert):
		return "TLS handshake failed (" + tlsKeys + ")"
	case errors.As(err, &notTLS):
		return "TLS handshake failed (the server does not speak TLS on this port)"
	case errors.As(err, &opErr) && opErr.Op == "remote error":
		// A TLS alert from the server: it refused our certificate, or
		// the lack of one.
		return "TLS handshake failed, the server refused this client (check tls cert and key used by " + a.section + ")"
	case a.TLS != nil && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)):
		// Under TLS 1.3 the server checks the client certificate after
		// the client's handshake is done; its alert races with our first
		// write, which then fails with a closed connection instead.
		return "the server closed the connection after the TLS handshake, it may have refused this client (check tls cert and key used by " + a.section + ")"
	}
	return ""
}

// redactedURLs joins the server URLs for messages, with any password in
// them masked. A user name without a password is masked too: to NATS it is
// a token.
func redactedURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, s := range urls {
		out[i] = s
		u, err := url.Parse(s)
		if err != nil || u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); !ok {
			u.User = url.User("xxxxx")
		}
		out[i] = u.Redacted()
	}
	return strings.Join(out, ",")
}

// logRetry logs a failed attempt that is tried again: the first one and
// every 20th at level, the others at debug, so a long outage does not
// flood the log.
func logRetry(ctx context.Context, log *slog.Logger, level slog.Level, msg string, err error, attempt int) {
	if attempt != 1 && attempt%20 != 0 {
		level = slog.LevelDebug
	}
	log.Log(ctx, level, msg, "err", err, "attempt", attempt)
}

// connBasics are what a connection of either transport starts with: a
// logger (one that discards for nil) and its metrics, registered on reg
// with the label role.
func connBasics(role string, logger *slog.Logger, reg prometheus.Registerer) (*slog.Logger, *connMetrics, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m, err := newConnMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"role": role}, reg))
	return logger, m, err
}

// Defaults of both transports' options. Those a stream section of the
// configuration also has are config's, declared there once: config
// imports nothing of ours, so the library refers to it.
const (
	// DefaultConnectTimeout is ConnectTimeout's default (connect_timeout).
	DefaultConnectTimeout = config.DefaultConnectTimeout
	// DefaultAckWait is AckWait's default (ack_wait).
	DefaultAckWait = config.DefaultAckWait
	// MinAckWait is the shortest AckWait, NATS Streaming's; a shorter
	// one is taken for unset.
	MinAckWait = config.MinAckWait
	// DefaultMaxInflight is MaxInflight's default (max_inflight).
	DefaultMaxInflight = config.DefaultMaxInflight
	// DefaultBackoffMin and DefaultBackoffMax are BackoffMin's and
	// BackoffMax's defaults.
	DefaultBackoffMin = 250 * time.Millisecond
	DefaultBackoffMax = 15 * time.Second
)

// defaultTimings fills in the zero (or, for an ack wait, too short)
// settings both transports share.
func defaultTimings(connect, ackWait *time.Duration, maxInflight *int, backoffMin, backoffMax *time.Duration) {
	if *connect <= 0 {
		*connect = DefaultConnectTimeout
	}
	if *ackWait < MinAckWait {
		*ackWait = DefaultAckWait
	}
	if *maxInflight <= 0 {
		*maxInflight = DefaultMaxInflight
	}
	if *backoffMin <= 0 {
		*backoffMin = DefaultBackoffMin
	}
	if *backoffMax <= 0 {
		*backoffMax = DefaultBackoffMax
	}
}
