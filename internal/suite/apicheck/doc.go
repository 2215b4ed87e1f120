// Package apicheck holds the test that keeps the module's public API usable
// from outside: no exported declaration of a public package (one not under
// internal/) may mention a type of an internal package, since a caller
// outside the module could neither name nor build it.
package apicheck
