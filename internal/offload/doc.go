// Package offload forwards requests to neighbour edge nodes and to the cloud
// load balancer, and keeps the load information used to choose among them.
package offload
