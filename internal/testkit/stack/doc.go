// Package stack starts quiesce's three roles, a planner, a coordinator and
// workers, on a JetStream environment of package testenv, the way a process
// of each role would run them: every role on a connection of its own, so a
// test can kill one abruptly. At the end of the test it stops them in the
// order a process stops at shutdown: planners first (no new jobs), then
// workers (running tasks cancelled and handed back), coordinators last (the
// results the workers published are still applied).
//
// Start is the one-call form for tests that want the whole stack; New and
// the Start methods of a Stack are for tests that start, kill and restart
// roles one by one.
//
// It is a test kit: only tests and benchmarks import it.
package stack
