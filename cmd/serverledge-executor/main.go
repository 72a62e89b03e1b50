// Command serverledge-executor is the process inside every function
// container. It starts the runtime's long-lived worker right away (so the
// interpreter is warm before any code arrives), serves the executor
// protocol on a unix socket and, as PID 1, reaps orphaned processes.
// See docs/executor.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/serverledge/serverledge/internal/executor"
)

// defaultWorkers is the worker command of each built-in runtime inside its image.
var defaultWorkers = map[string]string{
	"python": "python3 /serverledge/worker.py",
	"nodejs": "node /serverledge/worker.js",
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("executor failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	socketDir := executor.SocketDir
	if v := os.Getenv("SERVERLEDGE_SOCKET_DIR"); v != "" {
		socketDir = v
	}
	runtime := flag.String("runtime", "python", "runtime: python, nodejs or custom")
	worker := flag.String("worker", "", "worker command line (split on spaces); overrides the runtime default")
	flag.StringVar(&socketDir, "socket-dir", socketDir, "directory of executor.sock and the ready FIFO (env SERVERLEDGE_SOCKET_DIR)")
	codeDir := flag.String("code-dir", executor.CodeDir, "directory the function code is unpacked into")
	flag.Parse()

	cmd := *worker
	if cmd == "" {
		def, ok := defaultWorkers[*runtime]
		if !ok {
			return fmt.Errorf("runtime %q needs --worker (built in: python, nodejs)", *runtime)
		}
		cmd = def
	}
	argv := strings.Fields(cmd)
	if len(argv) == 0 {
		return errors.New("empty --worker command")
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	srv, err := executor.Start(ctx, executor.ServerConfig{
		SocketDir:   socketDir,
		CodeDir:     *codeDir,
		Worker:      argv,
		PingWorker:  *worker == "",
		ReapOrphans: os.Getpid() == 1,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	log.Info("executor listening", "runtime", *runtime, "socket-dir", socketDir, "worker-pid", srv.WorkerPID())
	<-ctx.Done()
	log.Info("executor stopping")
	return srv.Close()
}
