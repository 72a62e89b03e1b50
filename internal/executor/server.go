package executor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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
	// MaxConcurrency bounds the concurrency a /load may ask for.
	MaxConcurrency = 1024
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
	// Credential, when not nil, is the user and groups the worker runs as
	// (the executor keeps its own). Start fails if the switch is not
	// permitted (the executor lacks CAP_SETUID/CAP_SETGID): the worker
	// never silently keeps the executor's identity. The unpacked code is
	// made readable for that user.
	Credential *syscall.Credential
	// Logger receives lifecycle events (never one line per request); nil means slog.Default().
	Logger *slog.Logger
}

// Server is the executor running inside a function container: an HTTP/1.1
// server on a unix socket fronting one long-lived worker process. It passes
// up to the loaded concurrency invocations to the worker at once, each
// request line tagged with an "id" the worker echoes in its reply.
type Server struct {
	cfg  ServerConfig
	log  *slog.Logger
	ln   net.Listener
	http *http.Server

	// loadMu serializes /load (and the start-up ping).
	loadMu sync.Mutex
	// slots holds one token per invocation the worker may run at once; nil
	// until a function is loaded.
	slots atomic.Pointer[chan struct{}]

	// writeMu serializes writes of request lines to the worker.
	writeMu  sync.Mutex
	requests *os.File // write end of the worker's fd 3
	repliesF *os.File // read end of the worker's fd 4

	// readMu is held by the request whose turn it is to read fd 4; it
	// guards replies, reply, readerErr and closing readerDone.
	readMu  sync.Mutex
	replies *bufio.Reader
	reply   []byte
	// turn carries a wake-up to a request waiting for the reader's turn.
	turn chan struct{}

	pendMu  sync.Mutex
	nextID  uint64
	pending map[uint64]*call
	// readerDone is closed once replies cannot be read any more (the
	// worker closed fd 4, or sent an oversized reply); readerErr says why.
	readerDone chan struct{}
	readerErr  error
	// killReason, when set, explains why the executor killed the worker.
	killReason atomic.Pointer[string]

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

// call is one request waiting for its reply line.
type call struct {
	id    uint64
	reply chan []byte
}

// lineBuf is a reusable request line buffer.
type lineBuf struct {
	body []byte
	line bytes.Buffer
}

var linePool = sync.Pool{New: func() any { return &lineBuf{body: make([]byte, 0, 4096)} }}

func putLineBuf(b *lineBuf) {
	if cap(b.body) > keepBufferBytes || b.line.Cap() > keepBufferBytes {
		return
	}
	b.body = b.body[:0]
	b.line.Reset()
	linePool.Put(b)
}

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
		cfg:        cfg,
		log:        cfg.Logger,
		exited:     make(chan struct{}),
		done:       make(chan struct{}),
		reply:      make([]byte, 0, 4096),
		pending:    make(map[uint64]*call),
		readerDone: make(chan struct{}),
		turn:       make(chan struct{}, 1),
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
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	c := s.newCall()
	line := strconv.AppendUint([]byte(`{"op":"ping","id":`), c.id, 10)
	line = append(line, "}\n"...)
	if _, status, msg := s.roundTrip(c, line, DefaultLoadTimeout); status != http.StatusOK {
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

	env := os.Environ()
	if cred := s.cfg.Credential; cred != nil {
		env = workerEnv(env)
	}
	s.procMu.Lock()
	proc, err := os.StartProcess(argv0, s.cfg.Worker, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{devnull, os.Stdout, os.Stderr, reqR, repW},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Credential: s.cfg.Credential},
	})
	if err != nil {
		s.procMu.Unlock()
		_ = reqW.Close()
		_ = repR.Close()
		if s.cfg.Credential != nil && errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("executor: start worker %q as uid %d gid %d: %w (the executor needs CAP_SETUID and CAP_SETGID; it never runs the function as itself instead)",
				s.cfg.Worker[0], s.cfg.Credential.Uid, s.cfg.Credential.Gid, err)
		}
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

// workerEnv returns env with HOME pointing at /tmp when it names root's
// home, which an unprivileged worker cannot use.
func workerEnv(env []string) []string {
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if kv == "HOME=/root" {
			continue
		}
		out = append(out, kv)
	}
	if len(out) < len(env) || !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "HOME=") }) {
		out = append(out, "HOME=/tmp")
	}
	return out
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

// killWorkerFor records why the executor kills the worker, then kills it.
func (s *Server) killWorkerFor(reason string) {
	s.killReason.CompareAndSwap(nil, &reason)
	s.killWorker()
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

// acquire takes an invocation slot, or reports false if the client gave up.
func acquire(r *http.Request, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	select {
	case slots <- struct{}{}:
		return true
	case <-r.Context().Done():
		return false
	}
}

// checkRetired answers 410 and reports true if the executor is retired.
func (s *Server) checkRetired(w http.ResponseWriter) bool {
	if why := s.retired.Load(); why != nil {
		http.Error(w, "executor retired: "+*why, http.StatusGone)
		return true
	}
	return false
}

// loadConcurrency reads the ConcurrencyHeader of a /load request.
func loadConcurrency(r *http.Request) (int, error) {
	v := r.Header.Get(ConcurrencyHeader)
	if v == "" {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxConcurrency {
		return 0, fmt.Errorf("%s %q: want an integer from 1 to %d", ConcurrencyHeader, v, MaxConcurrency)
	}
	return n, nil
}

func (s *Server) serveLoad(w http.ResponseWriter, r *http.Request) {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	if s.checkRetired(w) {
		return
	}
	if s.slots.Load() != nil {
		http.Error(w, "a function is already loaded", http.StatusConflict)
		return
	}
	concurrency, err := loadConcurrency(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	env, err := DecodeEnv(r.Header.Get(EnvHeader))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	archive, err := readBody(r.Body, nil, MaxArchiveBytes)
	if err != nil {
		http.Error(w, "reading the code archive: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := codearchive.Validate(r.Context(), archive); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := codearchive.Extract(r.Context(), bytes.NewReader(archive), s.cfg.CodeDir); err != nil {
		s.retire("unpacking the code failed")
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.cfg.Credential != nil {
		if err := makeReadable(s.cfg.CodeDir); err != nil {
			s.retire("preparing the code failed")
			http.Error(w, "making the code readable for the function: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	c := s.newCall()
	req, err := json.Marshal(struct {
		Op          string            `json:"op"`
		ID          uint64            `json:"id"`
		Dir         string            `json:"Dir"`
		Handler     string            `json:"Handler"`
		Concurrency int               `json:"Concurrency"`
		Env         map[string]string `json:"Env,omitempty"`
	}{"load", c.id, s.cfg.CodeDir, r.Header.Get(HandlerHeader), concurrency, env})
	if err != nil {
		s.dropCall(c)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	reply, status, msg := s.roundTrip(c, append(req, '\n'), DefaultLoadTimeout)
	if status != http.StatusOK {
		http.Error(w, "loading the handler: "+msg, status)
		return
	}
	var res struct {
		InvokeResponse
		Concurrent bool `json:"Concurrent"`
	}
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
	if concurrency > 1 && !res.Concurrent {
		s.retire("the worker cannot serve concurrent invocations")
		http.Error(w, fmt.Sprintf("the worker does not serve concurrent invocations (its load reply lacks \"Concurrent\": true); load it with concurrency 1, not %d", concurrency), http.StatusBadRequest)
		return
	}
	slots := make(chan struct{}, concurrency)
	s.slots.Store(&slots)
	_, _ = io.WriteString(w, "loaded\n")
}

// makeReadable gives everyone read access to the files under dir and
// search access to its directories, so that a worker running as another
// user can import the code; it cannot change it.
func makeReadable(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fi.Mode().Perm() | 0o444
		if d.IsDir() || fi.Mode().Perm()&0o100 != 0 {
			want |= 0o111
		}
		if want == fi.Mode().Perm() {
			return nil
		}
		return os.Chmod(p, want)
	})
}

// invokeMeta holds the only field of InvokeRequest the executor itself needs.
type invokeMeta struct {
	TimeoutMillis int64 `json:"TimeoutMillis"`
}

const invokePrefix = `{"op":"invoke","id":`

func (s *Server) serveInvoke(w http.ResponseWriter, r *http.Request) {
	if s.checkRetired(w) {
		return
	}
	slotsP := s.slots.Load()
	if slotsP == nil {
		http.Error(w, "no function loaded", http.StatusConflict)
		return
	}
	slots := *slotsP
	if !acquire(r, slots) {
		return
	}
	defer func() { <-slots }()
	if s.checkRetired(w) {
		return
	}
	buf := linePool.Get().(*lineBuf)
	defer putLineBuf(buf)
	body, err := readBody(r.Body, buf.body[:0], MaxRequestBytes)
	buf.body = body
	if err != nil {
		http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
		return
	}
	// The worker line is the request object, compacted onto one line, with
	// "op" and "id" added: `{"op":"invoke","id":7` + `,"Params":...}`.
	c := s.newCall()
	var idBuf [20]byte
	line := &buf.line
	line.Reset()
	line.WriteString(invokePrefix)
	line.Write(strconv.AppendUint(idBuf[:0], c.id, 10))
	mark := line.Len()
	if err := json.Compact(line, body); err != nil {
		s.dropCall(c)
		http.Error(w, "malformed invoke request: "+err.Error(), http.StatusBadRequest)
		return
	}
	obj := line.Bytes()[mark:]
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		s.dropCall(c)
		http.Error(w, "malformed invoke request: not a JSON object", http.StatusBadRequest)
		return
	}
	var meta invokeMeta
	if err := json.Unmarshal(obj, &meta); err != nil {
		s.dropCall(c)
		http.Error(w, "malformed invoke request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(obj) == 2 { // "{}"
		line.Truncate(mark)
		line.WriteByte('}')
	} else {
		obj[0] = ',' // the object's own opening brace becomes the comma after the id
	}
	line.WriteByte('\n')

	timeout := DefaultTimeout
	if meta.TimeoutMillis > 0 {
		timeout = time.Duration(meta.TimeoutMillis) * time.Millisecond
	}
	reply, status, msg := s.roundTrip(c, line.Bytes(), timeout)
	if status != http.StatusOK {
		http.Error(w, msg, status)
		return
	}
	if !json.Valid(reply) {
		s.retire("the worker sent an invalid reply")
		s.killWorkerFor("it sent an invalid reply")
		http.Error(w, "the worker sent an invalid reply", http.StatusInternalServerError)
		return
	}
	w.Header()["Content-Type"] = jsonContentType
	_, _ = w.Write(reply)
}

// newCall registers a request waiting for its reply.
func (s *Server) newCall() *call {
	c := &call{reply: make(chan []byte, 1)}
	s.pendMu.Lock()
	s.nextID++
	c.id = s.nextID
	s.pending[c.id] = c
	s.pendMu.Unlock()
	return c
}

// dropCall forgets a call whose reply is no longer awaited.
func (s *Server) dropCall(c *call) {
	s.pendMu.Lock()
	delete(s.pending, c.id)
	s.pendMu.Unlock()
}

// roundTrip writes line to the worker and waits for the reply to c, at most
// timeout. On failure it returns the HTTP status to answer (504 timeout,
// 500 crash) and a message, having retired the executor.
func (s *Server) roundTrip(c *call, line []byte, timeout time.Duration) ([]byte, int, string) {
	select {
	case <-s.exited:
		s.dropCall(c)
		return nil, http.StatusInternalServerError, s.crashMessage()
	case <-s.readerDone:
		s.dropCall(c)
		return nil, http.StatusInternalServerError, s.readerFailure()
	default:
	}
	deadline := time.Now().Add(timeout)
	s.writeMu.Lock()
	_ = s.requests.SetWriteDeadline(deadline)
	_, err := s.requests.Write(line)
	s.writeMu.Unlock()
	if err != nil {
		s.dropCall(c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, http.StatusGatewayTimeout, s.timedOut(timeout)
		}
		return nil, http.StatusInternalServerError, s.crashMessage()
	}
	return s.await(c, deadline, timeout)
}

// await waits for the reply to c until deadline. The waiting requests take
// turns reading fd 4 (leader/follower): the one holding readMu reads reply
// lines, handing those of other calls to their channels, until its own
// arrives; then it passes the turn on. A lone request thus reads its own
// reply, with no goroutine hand-off.
func (s *Server) await(c *call, deadline time.Time, timeout time.Duration) ([]byte, int, string) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if s.readMu.TryLock() {
			reply, err := s.lead(c, deadline)
			s.readMu.Unlock()
			s.passTurn()
			if err == nil {
				return reply, http.StatusOK, ""
			}
			s.dropCall(c)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, http.StatusGatewayTimeout, s.timedOut(timeout)
			}
			return nil, http.StatusInternalServerError, s.readerFailure()
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
		}
		select {
		case reply := <-c.reply:
			return reply, http.StatusOK, ""
		case <-s.turn: // the reader's turn is free: try to take it
		case <-timer.C:
			s.dropCall(c)
			select { // the reply may have raced the timer
			case reply := <-c.reply:
				return reply, http.StatusOK, ""
			default:
			}
			return nil, http.StatusGatewayTimeout, s.timedOut(timeout)
		case <-s.readerDone:
			s.dropCall(c)
			select {
			case reply := <-c.reply:
				return reply, http.StatusOK, ""
			default:
			}
			return nil, http.StatusInternalServerError, s.readerFailure()
		}
	}
}

// passTurn wakes one request waiting for the reader's turn, if any.
func (s *Server) passTurn() {
	select {
	case s.turn <- struct{}{}:
	default:
	}
}

// lead reads reply lines, with readMu held, until the one for c arrives or
// deadline passes; replies to other calls go to their channels.
func (s *Server) lead(c *call, deadline time.Time) ([]byte, error) {
	select { // delivered by the previous reader
	case reply := <-c.reply:
		return reply, nil
	default:
	}
	select {
	case <-s.readerDone:
		return nil, s.readerErr
	default:
	}
	_ = s.repliesF.SetReadDeadline(deadline)
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, err
			}
			if errors.Is(err, errReplyTooLarge) {
				s.retire("the worker sent an oversized reply")
				s.killWorkerFor("it sent an oversized reply")
			}
			s.readerErr = err
			close(s.readerDone)
			return nil, err
		}
		to, reply := s.route(line)
		if to == c {
			return reply, nil
		}
		if to != nil {
			to.reply <- reply // buffered, and each call gets one reply: never blocks
		}
	}
}

// timedOut retires the executor and stops the worker after an invocation
// exceeded timeout.
func (s *Server) timedOut(timeout time.Duration) string {
	s.retire("the function timed out")
	s.killWorkerFor("an invocation exceeded its timeout of " + timeout.String())
	return "function exceeded its timeout of " + timeout.String() + " and was stopped"
}

// readerFailure describes why replies can no longer be read.
func (s *Server) readerFailure() string {
	if errors.Is(s.readerErr, errReplyTooLarge) {
		return s.readerErr.Error()
	}
	return s.crashMessage()
}

// route finds the call a reply line answers by the id it echoes, forgets
// the call, and returns it with a copy of the reply without the id. A
// worker that does not echo ids (a custom worker of the first protocol
// version) serves one request at a time, so its reply belongs to the only
// call waiting. The call is nil for a reply nobody waits for (any more).
func (s *Server) route(line []byte) (*call, []byte) {
	id, rest, ok := replyID(line)
	var reply []byte
	if ok {
		reply = make([]byte, 0, len(rest)+1)
		reply = append(append(reply, '{'), rest...)
	} else {
		reply = bytes.Clone(line)
	}
	s.pendMu.Lock()
	c := s.pending[id]
	if !ok {
		c = nil
		if len(s.pending) == 1 {
			for _, only := range s.pending {
				c = only
			}
		}
	}
	if c != nil {
		delete(s.pending, c.id)
	}
	s.pendMu.Unlock()
	if c == nil {
		s.log.Warn("dropping a worker reply nobody waits for", "bytes", len(line))
	}
	return c, reply
}

// replyID parses the `{"id":N,` (or `{"id":N}`) a reply line starts with;
// rest is the line after the id and its comma, starting with the next field
// or the closing brace.
func replyID(line []byte) (id uint64, rest []byte, ok bool) {
	const prefix = `{"id":`
	if !bytes.HasPrefix(line, []byte(prefix)) {
		return 0, nil, false
	}
	i := len(prefix)
	for i < len(line) && line[i] >= '0' && line[i] <= '9' {
		i++
	}
	if i == len(prefix) || i == len(line) {
		return 0, nil, false
	}
	id, err := strconv.ParseUint(string(line[len(prefix):i]), 10, 64)
	if err != nil {
		return 0, nil, false
	}
	switch line[i] {
	case ',':
		return id, line[i+1:], true
	case '}':
		return id, line[i:], true
	}
	return 0, nil, false
}

var errReplyTooLarge = fmt.Errorf("worker reply larger than %d bytes", maxReplyBytes)

// readLine reads one newline-terminated reply, without the newline. The
// slice is valid until the next call.
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
	line := s.reply[:len(s.reply)-1]
	if cap(s.reply) > keepBufferBytes {
		s.reply = make([]byte, 0, 4096)
	}
	return line, nil
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
	if why := s.killReason.Load(); why != nil {
		msg := "function process stopped by the executor because " + *why
		s.retire("the function process was stopped: " + *why)
		return msg
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
