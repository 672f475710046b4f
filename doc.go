// Package prometheusstreams carries Prometheus scrapes from remote data
// centres over NATS (JetStream, or NATS Streaming for 1.0 users) to a
// central Pushgateway or to the central Prometheus itself. The binary lives
// in cmd/prometheus-streams; the packages below it each do one job, and
// docs/architecture.md maps them.
package prometheusstreams
