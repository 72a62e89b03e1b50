// Package scheduling decides where each request runs: warm or cold on this
// node, queued, offloaded, or rejected, according to its QoS class.
package scheduling
