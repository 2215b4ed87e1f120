// Package sshbench measures the simultaneous flush over SSH: N loopback
// addresses (127.0.1.1…127.0.1.N) behind one real OpenSSH sshd, a simulated
// nodetool that records on the node when its snapshot started and ended,
// the worker's real flush path (SSH executor, arm, fire time), and
// parallel-ssh running the same command as the baseline. Its test runs only
// under the benchssh build tag (make bench-ssh), never in make test.
package sshbench
