package scheduling

import "testing"

func woken(w *gateWaiter) bool {
	select {
	case <-w.wake:
		return true
	default:
		return false
	}
}

// TestGateReleaseWakesOne checks that a warm release wakes only the
// longest-waiting waiter, and a freed cold-start slot wakes all of them.
func TestGateReleaseWakesOne(t *testing.T) {
	g := newColdGate(1)
	a, b, c := newGateWaiter(), newGateWaiter(), newGateWaiter()
	for _, w := range []*gateWaiter{a, b, c} {
		g.watch("f", w)
	}
	g.watch("f", a) // watching again keeps a's place
	g.released("f")
	if !woken(a) || woken(b) || woken(c) {
		t.Fatal("a release must wake exactly the first waiter")
	}
	g.released("f")
	if woken(a) || !woken(b) || woken(c) {
		t.Fatal("the second release must wake the second waiter")
	}
	g.watch("f", a)
	seated := false
	if !g.tryEnter("f", 1, &seated) {
		t.Fatal("the only cold-start slot is free")
	}
	g.leave("f", 1)
	if !woken(a) || !woken(c) {
		t.Fatal("a freed cold-start slot must wake every waiter")
	}
	if len(g.fns) != 0 {
		t.Fatalf("a gate without waiters or cold starts must be forgotten, got %v", g.fns)
	}
}

// TestGateUnwatchForwardsWake checks that a waiter that leaves with an
// unconsumed wake-up passes it on, and that a waiter that left is not woken.
func TestGateUnwatchForwardsWake(t *testing.T) {
	g := newColdGate(1)
	a, b, c := newGateWaiter(), newGateWaiter(), newGateWaiter()
	for _, w := range []*gateWaiter{a, b, c} {
		g.watch("f", w)
	}
	g.unwatch("f", b)
	g.released("f") // wakes a
	g.unwatch("f", a)
	if woken(a) || woken(b) || !woken(c) {
		t.Fatal("a's unconsumed wake-up must go to c, skipping b, which left")
	}
	g.unwatch("f", c)
	if len(g.fns) != 0 {
		t.Fatalf("a gate without waiters or cold starts must be forgotten, got %v", g.fns)
	}
}
