package etcdreg_test

import (
	"flag"
	"os"
	"testing"
)

// TestMain raises the default -parallel: most of these tests wait for
// leases to expire, which takes time but no CPU.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", "8")
	}
	os.Exit(m.Run())
}
