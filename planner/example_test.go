package planner_test

import (
	"fmt"
	"time"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/planner"
)

// Keep-last-N retires every backup but the newest N. The newest is never
// selected, and the answer depends only on the catalog given.
func ExampleSelectRetired() {
	day := func(d int) time.Time { return time.Date(2026, 11, d, 2, 0, 0, 0, time.UTC) }
	newestFirst := []messages.Backup{
		{JobID: "orders-000000000004", FinishedAt: day(24)},
		{JobID: "orders-000000000003", FinishedAt: day(23)},
		{JobID: "orders-000000000002", FinishedAt: day(22)},
		{JobID: "orders-000000000001", FinishedAt: day(21)},
	}
	fmt.Println(planner.SelectRetired(newestFirst, 2))
	fmt.Println(planner.SelectRetired(newestFirst, 0))
	// Output:
	// [orders-000000000001 orders-000000000002]
	// []
}
