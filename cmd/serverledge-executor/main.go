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
	"strconv"
	"strings"
	"syscall"

	"github.com/serverledge/serverledge/internal/executor"
)

// defaultWorkerUser is nobody:nogroup on Debian, the user the function runs as.
const defaultWorkerUser = "65534:65534"

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
	workerUser := flag.String("worker-user", defaultWorkerUser, "uid:gid the worker (the function) runs as; \"\" keeps the executor's own, which must not be root")
	flag.Parse()

	cred, err := workerCredential(*workerUser)
	if err != nil {
		return err
	}

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
		Credential:  cred,
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

// workerCredential parses "uid:gid" (or "uid", gid = uid) into the worker's
// credential, with no supplementary groups. "" keeps the executor's own
// user, refused when that is root: the function never runs as uid 0.
func workerCredential(spec string) (*syscall.Credential, error) {
	if spec == "" {
		if os.Geteuid() == 0 {
			return nil, errors.New("refusing to run the worker as root: give --worker-user uid:gid")
		}
		return nil, nil
	}
	uidStr, gidStr, hasGID := strings.Cut(spec, ":")
	if !hasGID {
		gidStr = uidStr
	}
	uid, err := strconv.ParseUint(uidStr, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("--worker-user %q: uid: %w", spec, err)
	}
	gid, err := strconv.ParseUint(gidStr, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("--worker-user %q: gid: %w", spec, err)
	}
	if uid == 0 || gid == 0 {
		return nil, fmt.Errorf("--worker-user %q: refusing to run the worker as root (uid or gid 0)", spec)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}
