// Package pushgateway is the HTTP client for the Prometheus Pushgateway API:
// grouping-key paths with the @base64 encoding, PUT and DELETE of groups, and
// errors that carry the Pushgateway's reason and say whether to retry.
package pushgateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/choria-io/prometheus-streams/config"
)

const (
	// DefaultTimeout bounds each request when Options.HTTPClient is nil
	// and Options.Timeout is zero: push_gateway.timeout's default, which
	// config declares (config imports nothing of ours).
	DefaultTimeout = config.DefaultPushTimeout
	// DefaultUserAgent is sent when Options.UserAgent is empty.
	DefaultUserAgent = "prometheus-streams"

	// maxReason caps the error text kept from a refusing answer: the
	// Pushgateway's reasons are one line, anything longer is a proxy page.
	maxReason = 1 << 10
	// maxDrain bounds how much of a body is read just to reuse the
	// connection; past it, closing is cheaper than reading.
	maxDrain = 64 << 10
)

// Options configure a Client.
type Options struct {
	// URL is the base URL, e.g. http://127.0.0.1:9091. A path prefix such
	// as /pgw is kept; query and fragment are refused.
	URL string
	// HTTPClient is used as given (its own timeout and transport). When
	// nil, the Client builds one with Timeout and a private transport.
	HTTPClient *http.Client
	// Timeout bounds each request when HTTPClient is nil; zero means
	// DefaultTimeout.
	Timeout time.Duration
	// UserAgent is sent with every request; empty means DefaultUserAgent.
	UserAgent string
}

// Client talks to one Pushgateway. It is safe for concurrent use.
type Client struct {
	base      string // scheme://host[/prefix] without a trailing slash
	http      *http.Client
	userAgent string
}

// New validates opts and returns a Client. It makes no request.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("pushgateway url %q: %w", opts.URL, err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("pushgateway url %q: scheme must be http or https", opts.URL)
	case u.Host == "":
		return nil, fmt.Errorf("pushgateway url %q: no host", opts.URL)
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("pushgateway url %q: query and fragment are not allowed", opts.URL)
	}

	hc := opts.HTTPClient
	if hc == nil {
		timeout := opts.Timeout
		if timeout <= 0 {
			timeout = DefaultTimeout
		}
		// A private transport, so CloseIdleConnections affects only
		// this client and no idle connection outlives it unseen.
		hc = &http.Client{
			Timeout:   timeout,
			Transport: http.DefaultTransport.(*http.Transport).Clone(),
		}
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = DefaultUserAgent
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return &Client{base: u.String(), http: hc, userAgent: ua}, nil
}

// Push replaces the group's metrics with body (HTTP PUT). contentType is
// sent as given: protobuf delimited or text 0.0.4; the Pushgateway falls
// back to text for anything else. body is only read, never retained.
// Any 2xx is success. A refusal is a *StatusError (wrapped); see Retryable.
func (c *Client) Push(ctx context.Context, key GroupingKey, contentType string, body []byte) error {
	if err := key.validate(); err != nil {
		return fmt.Errorf("push %s: %w", key, err)
	}
	if err := c.do(ctx, http.MethodPut, key.Path(), contentType, body); err != nil {
		return fmt.Errorf("push %s: %w", key, err)
	}
	return nil
}

// Delete removes the group (HTTP DELETE). Deleting a group that does not
// exist succeeds, as it does on the Pushgateway.
func (c *Client) Delete(ctx context.Context, key GroupingKey) error {
	if err := key.validate(); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := c.do(ctx, http.MethodDelete, key.Path(), "", nil); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// CloseIdleConnections closes the idle keep-alive connections of the
// underlying HTTP client; call it when done with the Client.
func (c *Client) CloseIdleConnections() {
	c.http.CloseIdleConnections()
}

func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("User-Agent", c.userAgent)

	resp, err := c.http.Do(req)
	if err != nil {
		return err // *url.Error already names method and URL
	}
	defer func() {
		// Drain so the keep-alive connection goes back to the pool.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		_ = resp.Body.Close()
	}()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	reason, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
	return &StatusError{
		Code:   resp.StatusCode,
		Reason: strings.TrimSpace(string(reason)),
		Method: method,
		Path:   path,
	}
}

// StatusError is a non-2xx answer: Code and the Pushgateway's reason (the
// response body, trimmed, capped at 1 KiB).
type StatusError struct {
	Code   int
	Reason string
	Method string
	Path   string
}

// Error names the request, the status and the reason.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.Method, e.Path, e.Code, http.StatusText(e.Code))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Retryable reports whether err is worth retrying: network errors, timeouts
// and 5xx are; 4xx are not (the same body would be refused again), except
// 408 and 429, which only say "not now" (a proxy in front may send them);
// context cancellation, an invalid key and a TLS certificate failure are
// not. 401 and 403 (wrong or missing credentials in push_gateway's
// basic_auth, authorization or oauth2) are configuration errors: they stay
// until the configuration changes, so they are not retried either.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusRequestTimeout || se.Code == http.StatusTooManyRequests
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, ErrInvalidGroupingKey):
		return false
	case errors.Is(err, context.DeadlineExceeded):
		return true
	}
	if isCertificateError(err) {
		// A certificate problem needs a person, not another try.
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		// *url.Error is a net.Error: everything http.Client.Do
		// returns is a transport failure, since New validated the URL.
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

func isCertificateError(err error) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		invalid          x509.CertificateInvalidError
		hostname         x509.HostnameError
		verification     *tls.CertificateVerificationError
	)
	return errors.As(err, &unknownAuthority) || errors.As(err, &invalid) ||
		errors.As(err, &hostname) || errors.As(err, &verification)
}
