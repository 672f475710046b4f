// Package envelope is the wire format of prometheus-streams: one message per
// scrape, a small binary header followed by the compressed exposition (snappy by
// default, or zstd).
// It encodes and decodes (also the 1.0 JSON format, for a rolling upgrade),
// enforces the limits a receiver needs against hostile input, and does no I/O.
//
// The byte layout, limits and versioning rules are in docs/wire-format.md.
package envelope
