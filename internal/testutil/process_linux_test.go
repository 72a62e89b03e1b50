package testutil_test

import (
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/testutil"
)

func TestProcessStop(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		wantInTime bool
		wantSignal syscall.Signal
	}{
		{"exits on SIGTERM", "echo ready; exec sleep 30", true, syscall.SIGTERM},
		{"ignores SIGTERM and is killed", `trap "" TERM; echo ready; exec sleep 30`, false, syscall.SIGKILL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out testutil.SyncBuffer
			cmd := exec.Command("sh", "-c", tt.script)
			cmd.Stdout = &out
			p, err := testutil.StartProcess(cmd, syscall.SIGKILL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Kill)
			if p.State() != nil {
				t.Fatal("State is set while the process runs")
			}
			// The trap, if any, is set once the script says it is ready.
			testutil.WaitUntil(t, 10*time.Second, "script ready", func() bool { return out.String() == "ready\n" })
			inTime, err := p.Stop(time.Second)
			if err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if inTime != tt.wantInTime {
				t.Errorf("Stop reported exit in time %v, want %v", inTime, tt.wantInTime)
			}
			select {
			case <-p.Exited():
			default:
				t.Fatal("Exited is open after Stop returned")
			}
			ws, ok := p.State().Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != tt.wantSignal {
				t.Errorf("process ended with %v, want signal %v", p.State(), tt.wantSignal)
			}
			if inTime, err := p.Stop(time.Second); !inTime || err != nil {
				t.Errorf("second Stop: %v, %v; want true, nil", inTime, err)
			}
		})
	}
}
