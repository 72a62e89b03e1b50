// Package embedded runs an etcd server inside the node process, so that a
// single node needs nothing but Docker. Only cmd/serverledge imports it: the
// CLI and the load balancer do not link the etcd server.
//
// The server is a one-member cluster listening on loopback. Its revision
// history is compacted periodically so that frequent load reports do not
// grow the database without bound.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/serverledge/serverledge/internal/registry/internal/zapslog"
)

// Defaults used when a Config field is empty.
const (
	// DefaultClientURL is where clients reach the embedded etcd.
	DefaultClientURL = "http://127.0.0.1:2379"
	// DefaultPeerURL lets the server pick a free loopback port for its
	// (unused, single-member) peer listener.
	DefaultPeerURL = "http://127.0.0.1:0"
	// DefaultStartTimeout bounds Start when ctx has no earlier deadline.
	DefaultStartTimeout = 30 * time.Second
	// DefaultCompactionRetention is how much revision history is kept.
	DefaultCompactionRetention = 10 * time.Minute
)

// benignMessages are what etcd logs on a normal start of a loopback,
// single-member server without authentication: warnings about that setup,
// and a storage-version check that runs before a fresh member has recorded
// its first term and succeeds on a later round (etcd-io/etcd#18978).
var benignMessages = []string{
	"Running http and grpc server on single port",
	"simple token is not cryptographically signed",
	"Failed to detect schema version",
	"failed to update storage version",
}

// Sentinel errors callers branch on.
var (
	// ErrStart wraps every failure to start the server.
	ErrStart = errors.New("embedded etcd: cannot start")
	// ErrDirInUse means another etcd has the data directory open.
	ErrDirInUse = errors.New("data directory is in use by another etcd")
)

// Config configures the embedded server.
type Config struct {
	// Dir is the data directory; it is created (mode 0700) when missing.
	Dir string
	// ClientURL is the http://host:port clients connect to; port 0 picks a
	// free port. Default DefaultClientURL.
	ClientURL string
	// PeerURL is the http://host:port of the peer listener; port 0 picks a
	// free port. Default DefaultPeerURL.
	PeerURL string
	// Logger receives the server's logs; default slog.Default().
	Logger *slog.Logger
	// LogLevel is the lowest level forwarded to Logger; default slog.LevelWarn.
	LogLevel *slog.Level
	// StartTimeout bounds Start; default DefaultStartTimeout.
	StartTimeout time.Duration
	// CompactionRetention is how much revision history the server keeps;
	// default DefaultCompactionRetention.
	CompactionRetention time.Duration
}

// Server is a running embedded etcd.
type Server struct {
	etcd      *embed.Etcd
	endpoints []string
	level     *slog.LevelVar
}

// Start starts the server and returns once it serves clients. An unusable
// data directory or an address already in use are reported with the path or
// address, wrapped in ErrStart.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: data directory is required", ErrStart)
	}
	if err := checkDir(cfg.Dir); err != nil {
		return nil, fmt.Errorf("%w: data directory %q is unusable: %w", ErrStart, cfg.Dir, err)
	}
	if err := checkNotInUse(cfg.Dir); err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrStart, cfg.Dir, err)
	}
	clientURL, err := parseURL(cfg.ClientURL, DefaultClientURL)
	if err != nil {
		return nil, fmt.Errorf("%w: client URL: %w", ErrStart, err)
	}
	peerURL, err := parseURL(cfg.PeerURL, DefaultPeerURL)
	if err != nil {
		return nil, fmt.Errorf("%w: peer URL: %w", ErrStart, err)
	}
	timeout := cfg.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	// A port picked here may be taken by someone else before etcd binds it;
	// only then is it worth trying again with another one.
	const attempts = 3
	for i := 1; ; i++ {
		srv, picked, err := start(ctx, cfg, clientURL, peerURL)
		if err == nil {
			return srv, nil
		}
		if !takenPicked(err, picked) || i == attempts {
			return nil, err
		}
	}
}

// takenPicked reports whether err is the failure to bind one of the picked
// addresses.
func takenPicked(err error, picked []string) bool {
	var opErr *net.OpError
	if !errors.Is(err, syscall.EADDRINUSE) || !errors.As(err, &opErr) || opErr.Addr == nil {
		return false
	}
	for _, addr := range picked {
		if opErr.Addr.String() == addr {
			return true
		}
	}
	return false
}

// start makes one attempt to start the server and also returns the
// addresses it picked for port 0.
func start(ctx context.Context, cfg Config, clientURL, peerURL url.URL) (*Server, []string, error) {
	var picked []string
	client, pickedClient, err := resolvePort(clientURL)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if pickedClient {
		picked = append(picked, client.Host)
	}
	peer, pickedPeer, err := resolvePort(peerURL)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrStart, err)
	}
	if pickedPeer {
		picked = append(picked, peer.Host)
	}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	if cfg.LogLevel != nil {
		level.Set(*cfg.LogLevel)
	}
	retention := cfg.CompactionRetention
	if retention <= 0 {
		retention = DefaultCompactionRetention
	}

	ec := embed.NewConfig()
	ec.Name = "serverledge"
	ec.Dir = cfg.Dir
	ec.ListenClientUrls = []url.URL{client}
	ec.AdvertiseClientUrls = []url.URL{client}
	ec.ListenPeerUrls = []url.URL{peer}
	ec.AdvertisePeerUrls = []url.URL{peer}
	ec.InitialCluster = ec.InitialClusterFromName(ec.Name)
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = retention.String()
	ec.EnableGRPCGateway = false
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zapslog.New(logger.With("component", "etcd"), level, benignMessages...))

	e, err := startEtcd(ctx, ec, level)
	if err != nil {
		return nil, picked, fmt.Errorf("%w (data directory %q, client URL %s, peer URL %s): %w",
			ErrStart, cfg.Dir, client.String(), peer.String(), err)
	}
	fail := func() {
		level.Set(slog.LevelError + 1)
		e.Close()
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		fail()
		return nil, nil, fmt.Errorf("%w: %w", ErrStart, err)
	case <-ctx.Done():
		fail()
		return nil, nil, fmt.Errorf("%w: not ready: %w", ErrStart, ctx.Err())
	}
	endpoints := make([]string, 0, len(e.Clients))
	for _, l := range e.Clients {
		endpoints = append(endpoints, "http://"+l.Addr().String())
	}
	return &Server{etcd: e, endpoints: endpoints, level: level}, nil, nil
}

// startEtcd runs embed.StartEtcd, which can block for good (it waits for
// the database lock), within ctx. A server that starts after ctx ended is
// closed.
func startEtcd(ctx context.Context, ec *embed.Config, level *slog.LevelVar) (*embed.Etcd, error) {
	type started struct {
		e   *embed.Etcd
		err error
	}
	ch := make(chan started, 1)
	go func() {
		e, err := embed.StartEtcd(ec)
		ch <- started{e, err}
	}()
	select {
	case s := <-ch:
		return s.e, s.err
	case <-ctx.Done():
		go func() {
			if s := <-ch; s.e != nil {
				level.Set(slog.LevelError + 1)
				s.e.Close()
			}
		}()
		return nil, fmt.Errorf("still starting: %w", ctx.Err())
	}
}

// checkNotInUse fails with ErrDirInUse when another etcd holds the database
// in dir, rather than letting etcd wait for it forever.
func checkNotInUse(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, "member", "snap", "db"), os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return ErrDirInUse
		}
		return fmt.Errorf("lock database: %w", err)
	}
	return nil
}

// Endpoints returns the client URLs of the server, with real ports.
func (s *Server) Endpoints() []string {
	return append([]string(nil), s.endpoints...)
}

// Err delivers a fatal server error, if one happens while it runs.
func (s *Server) Err() <-chan error {
	return s.etcd.Err()
}

// Close stops the server and waits until it has stopped.
func (s *Server) Close() error {
	// Shutting down, etcd reports every listener it closes as an error.
	s.level.Set(slog.LevelError + 1)
	s.etcd.Close()
	return nil
}

func checkDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		return fmt.Errorf("not writable: %w", err)
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func parseURL(raw, def string) (url.URL, error) {
	if raw == "" {
		raw = def
	}
	u, err := url.Parse(raw)
	if err != nil {
		return url.URL{}, fmt.Errorf("%q: %w", raw, err)
	}
	if u.Scheme != "http" || u.Hostname() == "" || u.Port() == "" {
		return url.URL{}, fmt.Errorf("%q must be http://host:port", raw)
	}
	return *u, nil
}

// resolvePort replaces port 0 with a free port and reports whether it did.
func resolvePort(u url.URL) (url.URL, bool, error) {
	if u.Port() != "0" {
		return u, false, nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(u.Hostname(), "0"))
	if err != nil {
		return url.URL{}, false, fmt.Errorf("find a free port on %s: %w", u.Hostname(), err)
	}
	addr, ok := l.Addr().(*net.TCPAddr)
	l.Close()
	if !ok {
		return url.URL{}, false, fmt.Errorf("find a free port on %s: unexpected address %v", u.Hostname(), l.Addr())
	}
	port := addr.Port
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(port))
	return u, true, nil
}
