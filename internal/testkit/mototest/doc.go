// Package mototest runs moto's EC2 server (PyPI moto[server]) for tests, and
// a proxy in front of it that answers RequestLimitExceeded on demand, or
// reports snapshots in the error state.
//
// It is a test kit: only tests import it.
package mototest
