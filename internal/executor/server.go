package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/serverledge/serverledge/internal/codearchive"
)

// Server limits and defaults.
const (
	// DefaultTimeout bounds an invocation whose TimeoutMillis is 0.
	DefaultTimeout = 60 * time.Second
	// DefaultLoadTimeout bounds importing the handler on /load.
	DefaultLoadTimeout = 120 * time.Second
	// MaxArchiveBytes bounds the body of /load.
	MaxArchiveBytes = 64 << 20
	// MaxRequestBytes bounds the body of /invoke.
	MaxRequestBytes = 32 << 20
	// maxReplyBytes bounds one reply line from the worker.
	maxReplyBytes = 48 << 20
	// keepBufferBytes is the largest request buffer kept for reuse.
	keepBufferBytes = 1 << 20
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// SocketDir holds executor.sock and, optionally, the ready FIFO (default SocketDir).
	SocketDir string
	// CodeDir is where /load unpacks the archive (default CodeDir).
	CodeDir string
	// Worker is the argv of the long-lived worker process; it reads requests
	// on fd 3 and writes replies on fd 4 (docs/executor.md).
	Worker []string
	// PingWorker makes Start wait until the worker answers a {"op":"ping"}
	// request before signalling ready, so that ready means the interpreter
	// is up, not only the socket. The built-in workers answer it.
	PingWorker bool
	// ReapOrphans makes the server reap every child process, not only its
	// worker; set it when the executor runs as PID 1.
	ReapOrphans bool
	// Logger receives lifecycle events (never one line per request); nil means slog.Default().
	Logger *slog.Logger
}

// Server is the executor running inside a function container: an HTTP/1.1
// server on a unix socket fronting one long-lived worker process.
type Server struct {
	cfg  ServerConfig
	log  *slog.Logger
	ln   net.Listener
	http *http.Server

	// sem serializes /load and /invoke: one request at a time.
	sem chan struct{}

	// Guarded by sem.
	loaded  bool
	body    []byte
	line    bytes.Buffer
	reply   []byte
	replies *bufio.Reader

	requests *os.File // write end of the worker's fd 3
	repliesF *os.File // read end of the worker's fd 4

	procMu    sync.Mutex
	workerPID int
	exited    chan struct{} // closed once the worker's exit status is known
	exitState string        // how the worker ended, set before exited is closed
	oomBase   int64         // OOM kill count of the cgroup when the worker started

	retired atomic.Pointer[string]
	closing atomic.Bool
	done    chan struct{} // closed by Close
	serveWG sync.WaitGroup
}

var jsonContentType = []string{"application/json"}

// Start spawns the worker, listens on SocketDir/executor.sock, writes
// "ready\n" to the ready FIFO if present, and serves in the background.
func Start(ctx context.Context, cfg ServerConfig) (*Server, error) {
	if cfg.SocketDir == "" {
		cfg.SocketDir = SocketDir
	}
	if cfg.CodeDir == "" {
		cfg.CodeDir = CodeDir
	}
	if len(cfg.Worker) == 0 {
		return nil, errors.New("executor: no worker command")
	}
	s := &Server{
		cfg:    cfg,
		log:    cfg.Logger,
		sem:    make(chan struct{}, 1),
		exited: make(chan struct{}),
		done:   make(chan struct{}),
		body:   make([]byte, 0, 4096),
		reply:  make([]byte, 0, 4096),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := s.startWorker(); err != nil {
		return nil, err
	}
	sock := filepath.Join(cfg.SocketDir, SocketName)
	_ = os.Remove(sock)
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "unix", sock)
	if err != nil {
		s.killWorker()
		close(s.done)
		return nil, fmt.Errorf("executor: listen: %w", err)
	}
	// The node may run as another user than the container's root.
	if err := os.Chmod(sock, 0o666); err != nil {
		s.log.Warn("cannot make the socket world-writable", "err", err)
	}
	s.ln = ln
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       15 * time.Minute,
	}
	s.serveWG.Add(1)
	go func() {
		defer s.serveWG.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("executor server stopped", "err", err)
		}
	}()
	if cfg.PingWorker {
		if err := s.ping(); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	signalReady(filepath.Join(cfg.SocketDir, ReadyFIFO))
	return s, nil
}

// ping waits for the worker to answer one request.
func (s *Server) ping() error {
	s.sem <- struct{}{}
	defer s.release()
	s.line.Reset()
	s.line.WriteString(`{"op":"ping"}` + "\n")
	if _, status, msg := s.roundTrip(DefaultLoadTimeout); status != http.StatusOK {
		return fmt.Errorf("executor: worker did not start: %s", msg)
	}
	return nil
}

// signalReady writes "ready\n" to the FIFO at p, if one exists and has a reader.
func signalReady(p string) {
	f, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return // absent, or nobody reading (ENXIO): the node polls the socket instead
	}
	_, _ = f.Write([]byte("ready\n"))
	_ = f.Close()
}

// WorkerPID returns the pid of the worker process.
func (s *Server) WorkerPID() int {
	s.procMu.Lock()
	defer s.procMu.Unlock()
	return s.workerPID
}

// Close stops serving, kills the worker and removes the socket.
func (s *Server) Close() error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	s.killWorker()
	err := s.http.Close()
	s.serveWG.Wait()
	_ = os.Remove(filepath.Join(s.cfg.SocketDir, SocketName))
	_ = s.requests.Close()
	_ = s.repliesF.Close()
	select { // give the reaper a moment so no zombie is left behind
	case <-s.exited:
	case <-time.After(time.Second):
	}
	close(s.done)
	return err
}

// startWorker spawns the worker with its request pipe on fd 3 and its
// reply pipe on fd 4, in its own process group.
func (s *Server) startWorker() error {
	reqR, reqW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("executor: pipe: %w", err)
	}
	repR, repW, err := os.Pipe()
	if err != nil {
		_ = reqR.Close()
		_ = reqW.Close()
		return fmt.Errorf("executor: pipe: %w", err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("executor: %w", err)
	}
	defer devnull.Close()
	defer reqR.Close()
	defer repW.Close()

	argv0, err := lookPath(s.cfg.Worker[0])
	if err != nil {
		_ = reqW.Close()
		_ = repR.Close()
		return err
	}
	var sigCh chan os.Signal
	if s.cfg.ReapOrphans {
		sigCh = notifySIGCHLD()
	}
	s.oomBase = oomKills()

	s.procMu.Lock()
	proc, err := os.StartProcess(argv0, s.cfg.Worker, &os.ProcAttr{
		Env:   os.Environ(),
		Files: []*os.File{devnull, os.Stdout, os.Stderr, reqR, repW},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		s.procMu.Unlock()
		_ = reqW.Close()
		_ = repR.Close()
		return fmt.Errorf("executor: start worker %q: %w", s.cfg.Worker[0], err)
	}
	s.workerPID = proc.Pid
	s.procMu.Unlock()

	s.requests = reqW
	s.repliesF = repR
	s.replies = bufio.NewReaderSize(repR, 64<<10)
	if s.cfg.ReapOrphans {
		go s.reapAll(sigCh)
	} else {
		go s.waitWorker(proc)
	}
	s.log.Info("worker started", "pid", proc.Pid, "cmd", s.cfg.Worker)
	return nil
}

func lookPath(name string) (string, error) {
	if filepath.IsAbs(name) || filepath.Base(name) != name {
		return name, nil
	}
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("executor: worker %q not found in PATH", name)
}

func notifySIGCHLD() chan os.Signal {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGCHLD)
	return ch
}

func (s *Server) waitWorker(proc *os.Process) {
	st, err := proc.Wait()
	if err != nil {
		s.workerExited("status unknown: " + err.Error())
		return
	}
	s.workerExited(describeExit(st.Sys().(syscall.WaitStatus)))
}

// reapAll reaps every child (the executor is PID 1) and records the worker's status.
func (s *Server) reapAll(sigCh chan os.Signal) {
	defer signal.Stop(sigCh)
	for {
		for {
			var ws syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
			s.procMu.Lock()
			isWorker := pid == s.workerPID
			s.procMu.Unlock()
			if isWorker {
				s.workerExited(describeExit(ws))
			}
		}
		select {
		case <-sigCh:
		case <-s.done:
			return
		}
	}
}

func (s *Server) workerExited(how string) {
	s.procMu.Lock()
	defer s.procMu.Unlock()
	select {
	case <-s.exited:
		return
	default:
	}
	s.exitState = how
	close(s.exited)
	if !s.closing.Load() {
		s.log.Warn("worker exited", "pid", s.workerPID, "how", how)
	}
}

func describeExit(ws syscall.WaitStatus) string {
	switch {
	case ws.Signaled():
		sig := ws.Signal()
		return fmt.Sprintf("killed by signal %d (%s)", int(sig), signalName(sig))
	case ws.Exited():
		return "exited with status " + strconv.Itoa(ws.ExitStatus())
	default:
		return "ended (wait status " + strconv.Itoa(int(ws)) + ")"
	}
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGKILL:
		return "SIGKILL"
	case syscall.SIGSEGV:
		return "SIGSEGV"
	case syscall.SIGABRT:
		return "SIGABRT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGBUS:
		return "SIGBUS"
	default:
		return sig.String()
	}
}

// killWorker kills the worker's whole process group.
func (s *Server) killWorker() {
	s.procMu.Lock()
	pid := s.workerPID
	s.procMu.Unlock()
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// retire makes every later request answer 410 with reason.
func (s *Server) retire(reason string) {
	s.retired.CompareAndSwap(nil, &reason)
}

// ServeHTTP implements the executor protocol.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/invoke":
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		s.serveInvoke(w, r)
	case "/load":
		if r.Method != http.MethodPost {
			http.Error(w, "use POST", http.StatusMethodNotAllowed)
			return
		}
		s.serveLoad(w, r)
	case "/health":
		_, _ = io.WriteString(w, "ok\n")
	default:
		http.Error(w, "unknown endpoint "+r.URL.Path, http.StatusNotFound)
	}
}

// acquire takes the request slot, or reports false if the client gave up.
func (s *Server) acquire(r *http.Request) bool {
	select {
	case s.sem <- struct{}{}:
		return true
	case <-r.Context().Done():
		return false
	}
}

func (s *Server) release() { <-s.sem }

// checkRetired answers 410 and reports true if the executor is retired.
func (s *Server) checkRetired(w http.ResponseWriter) bool {
	if why := s.retired.Load(); why != nil {
		http.Error(w, "executor retired: "+*why, http.StatusGone)
		return true
	}
	return false
}

func (s *Server) serveLoad(w http.ResponseWriter, r *http.Request) {
	if !s.acquire(r) {
		return
	}
	defer s.release()
	if s.checkRetired(w) {
		return
	}
	if s.loaded {
		http.Error(w, "a function is already loaded", http.StatusConflict)
		return
	}
	archive, err := readBody(r.Body, nil, MaxArchiveBytes)
	if err != nil {
		http.Error(w, "reading the code archive: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := codearchive.Check(archive); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := codearchive.Extract(r.Context(), bytes.NewReader(archive), s.cfg.CodeDir); err != nil {
		s.retire("unpacking the code failed")
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req, err := json.Marshal(struct {
		Op      string `json:"op"`
		Dir     string `json:"Dir"`
		Handler string `json:"Handler"`
	}{"load", s.cfg.CodeDir, r.Header.Get(HandlerHeader)})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	s.line.Reset()
	s.line.Write(req)
	s.line.WriteByte('\n')
	reply, status, msg := s.roundTrip(DefaultLoadTimeout)
	if status != http.StatusOK {
		http.Error(w, "loading the handler: "+msg, status)
		return
	}
	var res InvokeResponse
	if err := json.Unmarshal(reply, &res); err != nil {
		s.retire("the worker sent an invalid reply")
		http.Error(w, "worker sent an invalid reply to load: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if !res.Success {
		// The interpreter may hold a half-imported module: do not reuse it.
		s.retire("loading the handler failed: " + res.Error)
		http.Error(w, res.Error, http.StatusBadRequest)
		return
	}
	s.loaded = true
	_, _ = io.WriteString(w, "loaded\n")
}

// invokeMeta holds the only field of InvokeRequest the executor itself needs.
type invokeMeta struct {
	TimeoutMillis int64 `json:"TimeoutMillis"`
}

var invokePrefix = []byte(`{"op":"invoke",`)

func (s *Server) serveInvoke(w http.ResponseWriter, r *http.Request) {
	if !s.acquire(r) {
		return
	}
	defer s.release()
	if s.checkRetired(w) {
		return
	}
	if !s.loaded {
		http.Error(w, "no function loaded", http.StatusConflict)
		return
	}
	body, err := readBody(r.Body, s.body[:0], MaxRequestBytes)
	if cap(body) <= keepBufferBytes {
		s.body = body[:0]
	}
	if err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	// The worker line is the request object, compacted onto one line, with "op" added.
	s.line.Reset()
	s.line.Write(invokePrefix)
	if err := json.Compact(&s.line, body); err != nil {
		http.Error(w, "malformed invoke request: "+err.Error(), http.StatusBadRequest)
		return
	}
	line := s.line.Bytes()
	obj := line[len(invokePrefix):]
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		http.Error(w, "malformed invoke request: not a JSON object", http.StatusBadRequest)
		return
	}
	var meta invokeMeta
	if err := json.Unmarshal(obj, &meta); err != nil {
		http.Error(w, "malformed invoke request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(obj) == 2 { // "{}": drop the dangling comma
		s.line.Truncate(len(invokePrefix) - 1)
		s.line.WriteByte('}')
	} else {
		// Replace the object's own opening brace: `{"op":"invoke",` + `"Params":...}`.
		copy(line[len(invokePrefix):], line[len(invokePrefix)+1:])
		s.line.Truncate(len(line) - 1)
	}
	s.line.WriteByte('\n')

	timeout := DefaultTimeout
	if meta.TimeoutMillis > 0 {
		timeout = time.Duration(meta.TimeoutMillis) * time.Millisecond
	}
	reply, status, msg := s.roundTrip(timeout)
	if status != http.StatusOK {
		http.Error(w, msg, status)
		return
	}
	if !json.Valid(reply) {
		s.retire("the worker sent an invalid reply")
		s.killWorker()
		http.Error(w, "the worker sent an invalid reply", http.StatusInternalServerError)
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	_, _ = w.Write(reply)
}

// roundTrip writes s.line to the worker and reads one reply line. On
// failure it returns the HTTP status to answer (504 timeout, 500 crash)
// and a message, having retired the executor.
func (s *Server) roundTrip(timeout time.Duration) ([]byte, int, string) {
	select {
	case <-s.exited:
		return nil, http.StatusInternalServerError, s.crashMessage()
	default:
	}
	deadline := time.Now().Add(timeout)
	_ = s.requests.SetWriteDeadline(deadline)
	_ = s.repliesF.SetReadDeadline(deadline)
	_, err := s.requests.Write(s.line.Bytes())
	var reply []byte
	if err == nil {
		reply, err = s.readLine()
	}
	if err == nil {
		return reply, http.StatusOK, ""
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		msg := "function exceeded its timeout of " + timeout.String() + " and was stopped"
		s.retire("the function timed out")
		s.killWorker()
		return nil, http.StatusGatewayTimeout, msg
	}
	if errors.Is(err, errReplyTooLarge) {
		s.retire("the worker sent an oversized reply")
		s.killWorker()
		return nil, http.StatusInternalServerError, err.Error()
	}
	return nil, http.StatusInternalServerError, s.crashMessage()
}

var errReplyTooLarge = fmt.Errorf("worker reply larger than %d bytes", maxReplyBytes)

// readLine reads one newline-terminated reply, without the newline.
func (s *Server) readLine() ([]byte, error) {
	chunk, err := s.replies.ReadSlice('\n')
	if err == nil {
		return chunk[:len(chunk)-1], nil
	}
	s.reply = append(s.reply[:0], chunk...)
	for errors.Is(err, bufio.ErrBufferFull) {
		if len(s.reply) > maxReplyBytes {
			return nil, errReplyTooLarge
		}
		chunk, err = s.replies.ReadSlice('\n')
		s.reply = append(s.reply, chunk...)
	}
	if err != nil {
		return nil, err
	}
	return s.reply[:len(s.reply)-1], nil
}

// crashMessage retires the executor and describes how the worker died.
func (s *Server) crashMessage() string {
	s.killWorker()
	select {
	case <-s.exited:
	case <-time.After(2 * time.Second):
	}
	s.procMu.Lock()
	how := s.exitState
	s.procMu.Unlock()
	if how == "" {
		how = "stopped answering"
	}
	msg := "function process died: " + how
	if limit := memoryLimit(); limit > 0 {
		msg += fmt.Sprintf("; container memory limit %d MiB", limit>>20)
	}
	if oomKills() > s.oomBase {
		msg += "; the out-of-memory killer fired, the function needs more memory"
	} else if how == "killed by signal 9 (SIGKILL)" {
		msg += " (an out-of-memory kill looks like this)"
	}
	s.retire("the function process died: " + how)
	return msg
}

// readBody reads r into buf, refusing more than limit bytes.
func readBody(r io.Reader, buf []byte, limit int) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return buf[:0], fmt.Errorf("body larger than %d bytes", limit)
		}
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return buf[:0], err
		}
	}
}
