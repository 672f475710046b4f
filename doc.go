// Package prometheusstreams carries Prometheus scrapes from remote data
// centres to a central Pushgateway over NATS Streaming. The binary lives in
// cmd/prometheus-streams; the packages below it each do one job.
package prometheusstreams
