package messages_test

import (
	"fmt"

	"github.com/quiesce/quiesce/messages"
)

// A job's ID depends only on its cluster and the caller's request ID, so a
// request sent twice, or computed by the CLI before it submits, names one job.
func ExampleJobIDFor() {
	fmt.Println(messages.JobIDFor("orders", "nightly-orders-2026-11-24"))
	fmt.Println(messages.JobIDFor("orders", "nightly-orders-2026-11-24"))
	fmt.Println(messages.TaskID(messages.JobIDFor("orders", "nightly-orders-2026-11-24"), messages.KindFlush, "node-1"))
	// Output:
	// orders-e4e625c8a35d
	// orders-e4e625c8a35d
	// orders-e4e625c8a35d.flush.node-1
}

// A request is decoded strictly: unknown fields and malformed JSON are
// errors that match ErrMalformed; a bad value names its field.
func ExampleDecodeJobRequest() {
	_, err := messages.DecodeJobRequest([]byte(`{"schema":"quiesce.job-request/v1","request_id":"r1","cluster":"orders","tag":"x; rm -rf /"}`))
	fmt.Println(err)
	// Output:
	// invalid job request: tag "x; rm -rf /": must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$ (no spaces or shell metacharacters)
}
