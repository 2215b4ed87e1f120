// Package pace paces calls to an API whose provider limits them with token
// buckets, EC2's above all: EC2 throttles each account's calls per region and
// per operation (CreateSnapshots, say: a bucket of 100 tokens refilled at 5 a
// second), and every process of a fleet that calls it spends the same
// budget. A Pacer keeps that budget in one place every process shares: a
// JetStream key-value bucket (messages.BucketPace), one key per account,
// region and operation, changed only by compare-and-set on its revision. No
// process assumes it is alone.
//
// # The shared bucket
//
// A key holds the bucket as a generic cell rate algorithm (GCRA) state: the
// theoretical arrival time (TAT) of the next call, the rate allowed now, and
// when that rate last changed. A call reserves a slot: the earliest instant
// at which the bucket has a token for it, given every slot reserved before.
// Reserving is one compare-and-set that may take slots for several waiting
// calls of one process at once (Options.MaxBatch), so round trips grow with
// the number of processes rather than calls. The bucket's TAT is one queue
// that every process joins by compare-and-set, so no process, cluster or
// job takes more than the budget allows. Within a process, calls get slots
// earliest deadline first (their context's deadline: for a task, its job's
// phase deadline), so the jobs whose barrier opened first finish first and
// a job short of time goes before them. A slot is never reserved further
// ahead than Options.MaxAhead, which bounds the budget a crashed process's
// reservations can strand and how long a rate cut takes to act; a call that
// cannot reserve within it waits and tries again.
//
// The pacer leaves Options.Headroom of the provider's burst unused: a call
// reaches the provider some milliseconds after its slot, and the provider's
// own bucket must not see a burst that late calls and punctual ones make
// together.
//
// # Adapting
//
// A call the provider throttles anyway (someone else spends the same
// account's budget: another tool, the console, a limit lower than
// configured) is reported with Throttled. The shared rate is then cut by
// Options.Decrease, at most once per Options.Cooldown however many processes
// report throttles, and the bucket is treated as empty. It grows back by
// Options.Increase of the limit every Options.IncreaseEvery without a
// throttle, up to the limit: additive increase, multiplicative decrease, for
// every process at once since the rate is part of the shared state.
//
// # Time
//
// A Pacer reads time from its Clock, which tests and the fleet simulation
// replace with a scaled one; the provider's simulator reads the same clock.
package pace
