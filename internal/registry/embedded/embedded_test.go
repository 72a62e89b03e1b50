package embedded_test

import (
	"context"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/registry/embedded"
)

func TestScratch(t *testing.T) {
	t0 := time.Now()
	s, err := embedded.Start(context.Background(), embedded.Config{Dir: t.TempDir()+"/d", ClientURL: "http://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("start", time.Since(t0), s.Endpoints())
	t0 = time.Now()
	s.Close()
	t.Log("close", time.Since(t0))
}
