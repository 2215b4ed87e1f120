// Package topology creates quiesce's JetStream streams, buckets and durable
// consumers. Ensure is idempotent: every process calls it at start-up, and a
// second call with the same options changes nothing.
package topology
