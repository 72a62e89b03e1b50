// Package node owns the local warm pool: idle and busy function containers,
// stem cells, the memory and CPU budgets, LRU eviction and the janitor.
package node
