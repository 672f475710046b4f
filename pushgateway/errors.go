package pushgateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
)

// Error is what every request of a Client (Push, Delete, Families, Groups)
// fails with: the request, and either the answer that refused it (Code and
// Reason) or the cause (Err): ErrInvalidGroupingKey, ErrMetricsTooLarge,
// the transport's error, the context's, an answer that could not be read.
// Match it with errors.As; Retryable says whether to try again.
type Error struct {
	// Op is what failed, with the group it concerns: `push job="x"`.
	Op string
	// Method and Path name the request, the path without the base URL.
	Method, Path string
	// Code is the HTTP status of an answer that refused the request (not
	// 2xx), 0 when none did: then Err says what failed.
	Code int
	// Reason is the refusing answer's body, trimmed and capped at 1 KiB:
	// the Pushgateway's reason (for a broken /metrics, the gathering error).
	Reason string
	// Err is the cause when Code is 0.
	Err error
}

// Error names the operation, then the request, the status and the reason
// of a refusal, or the cause.
func (e *Error) Error() string {
	if e.Code == 0 {
		if e.Err == nil {
			return e.Op + ": " + e.Method + " " + e.Path + ": failed"
		}
		// The cause names the request when it matters: a *url.Error
		// names method and URL, and no request went out for a bad key.
		return e.Op + ": " + e.Err.Error()
	}
	s := fmt.Sprintf("%s: %s %s: %d %s", e.Op, e.Method, e.Path, e.Code, http.StatusText(e.Code))
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Unwrap returns the cause, nil for a refusal.
func (e *Error) Unwrap() error { return e.Err }

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
	var e *Error
	if errors.As(err, &e) && e.Code != 0 {
		return e.Code >= 500 || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests
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
