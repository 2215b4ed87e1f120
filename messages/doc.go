// Package messages holds quiesce's wire contracts: the JobRequest other systems
// submit, the Task messages workers execute, the TaskResult events they emit,
// the Job record kept in the jobs KV bucket, the Backup catalog record, and the
// NATS subjects, stream and bucket names that carry them.
//
// It depends on the standard library only, so any system can import it to
// build or read quiesce messages. Every type that crosses the wire carries a
// schema string; kinds and phases are stable strings, never Go type names.
package messages
