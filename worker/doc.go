// Package worker executes quiesce tasks. A Worker pulls from one durable
// consumer per task kind, runs each task through its handler with bounded
// concurrency, sends InProgress heartbeats while it runs, and decides in one
// place what happens to the message: ack after a success event, terminate
// after a permanent failure or the last delivery, or a delayed nak with
// backoff for a transient error. Drivers (node executors, volume snapshotters)
// sit behind the narrow interfaces in driver.go.
package worker
