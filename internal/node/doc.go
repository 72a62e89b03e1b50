// Package node owns the local warm pool of one Serverledge node: idle and
// busy function containers, function-agnostic stem cells, the memory and CPU
// budgets, least-recently-used eviction, and the reconciliation with the
// container runtime: the janitor expires idle containers and, like the
// runtime's event stream, takes containers that died behind the pool's back
// out of service.
//
// Accounting rules:
//
//   - Memory counts every container the pool owns (starting, idle, busy and
//     stem cells) at its memory limit; a stem cell counts
//     Config.StemCellMemoryMB until it is specialized, then the function's
//     memory. A container being removed stops counting as soon as the pool
//     decides to remove it: the Docker removal runs in the background, never
//     on a request's critical path.
//   - CPU counts the CPUDemand of busy containers only (from the Acquire of
//     its first request in flight to the Release of its last), once per
//     container; a demand ≤ 0 counts nothing.
//
// A container serves up to its function's Concurrency() requests at once
// (one by default); it is busy while any runs and idle otherwise, and only
// idle containers expire or are evicted. A container is tied to one
// function version; containers of an outdated or deleted version are retired
// (idle ones at once, busy ones on Release).
package node
