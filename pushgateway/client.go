// Package pushgateway is the HTTP client for the Prometheus Pushgateway API:
// grouping-key paths with the @base64 encoding, PUT and DELETE of groups,
// reading the groups and families it holds from its /metrics, and errors
// that carry the Pushgateway's reason and say whether to retry.
package pushgateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
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
// Any 2xx is success; an error is an *Error (see Retryable).
func (c *Client) Push(ctx context.Context, key GroupingKey, contentType string, body []byte) error {
	return c.change(ctx, "push", http.MethodPut, key, contentType, body)
}

// Delete removes the group (HTTP DELETE). Deleting a group that does not
// exist succeeds, as it does on the Pushgateway. An error is an *Error.
func (c *Client) Delete(ctx context.Context, key GroupingKey) error {
	return c.change(ctx, "delete", http.MethodDelete, key, "", nil)
}

// change sends a request that changes key's group; its answer's body is
// not needed.
func (c *Client) change(ctx context.Context, verb, method string, key GroupingKey, contentType string, body []byte) error {
	op := verb + " " + key.String()
	if err := key.validate(); err != nil {
		return &Error{Op: op, Method: method, Path: key.Path(), Err: err}
	}
	resp, err := c.send(ctx, op, method, key.Path(), contentType, "", body)
	if err != nil {
		return err
	}
	closeBody(resp)
	return nil
}

// CloseIdleConnections closes the idle keep-alive connections of the
// underlying HTTP client; call it when done with the Client.
func (c *Client) CloseIdleConnections() {
	c.http.CloseIdleConnections()
}

// send makes one request and returns a 2xx answer, whose body the caller
// closes with closeBody. Anything else is an *Error named op: a refusal
// carries the status and the reason.
func (c *Client) send(ctx context.Context, op, method, path, contentType, accept string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, &Error{Op: op, Method: method, Path: path, Err: fmt.Errorf("build request: %w", err)}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, &Error{Op: op, Method: method, Path: path, Err: err}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer closeBody(resp)
	reason, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
	return nil, &Error{Op: op, Method: method, Path: path, Code: resp.StatusCode, Reason: strings.TrimSpace(string(reason))}
}

// closeBody drains what is left of an answer, up to maxDrain, so the
// keep-alive connection goes back to the pool, and closes it.
func closeBody(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
}
