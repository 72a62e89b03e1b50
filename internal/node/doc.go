// Package node owns the local warm pool of one Serverledge node: idle and
// busy function containers, function-agnostic stem cells, the memory and CPU
// budgets, least-recently-used eviction and the janitor that expires idle
// containers.
//
// Accounting rules:
//
//   - Memory counts every container the pool owns (starting, idle, busy and
//     stem cells) at its memory limit; a stem cell counts
//     Config.StemCellMemoryMB until it is specialized, then the function's
//     memory. A container being removed stops counting as soon as the pool
//     decides to remove it: the Docker removal runs in the background, never
//     on a request's critical path.
//   - CPU counts the CPUDemand of busy containers only (from Acquire to
//     Release); a demand ≤ 0 counts nothing.
//
// Each container serves one request at a time. A container is tied to one
// function version; containers of an outdated or deleted version are retired
// (idle ones at once, busy ones on Release).
package node
