// Package agent tests agent mode on a real nats-server that enforces each
// agent's permissions: an agent takes and answers its own node's tasks only.
package agent
