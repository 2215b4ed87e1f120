// Package chaos kills workers, coordinators and NATS servers while a job
// runs on a three-server JetStream cluster, and checks the orchestrator's
// invariants afterwards. Its tests carry the chaos build tag: run them with
// `make test-chaos`.
package chaos
