package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/serverledge/serverledge/internal/function"
)

// nameRE is the syntax of node names and areas: they appear in container
// labels and registry keys.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// resolveDerived fills the defaults that depend on other keys or on the host.
func (l *loader) resolveDerived(s *state) {
	c := &s.cfg
	if c.Node.Name == "" {
		c.Node.Name = sanitizeName(l.host()) + "-" + strconv.Itoa(c.API.Port)
	}
	if c.Etcd.Embedded.Dir == "" {
		c.Etcd.Embedded.Dir = l.embeddedDir(c.Etcd.UseEmbedded())
	} else if abs, err := filepath.Abs(c.Etcd.Embedded.Dir); err == nil {
		c.Etcd.Embedded.Dir = abs
	}
	if c.Async.SpoolDir == "" {
		c.Async.SpoolDir = l.spoolDir(c.Node.Name)
	} else if abs, err := filepath.Abs(c.Async.SpoolDir); err == nil {
		c.Async.SpoolDir = abs
	}
}

// spoolDir returns the default spool directory of the node: the first
// parent of the data directories that is writable, without creating the
// node's own directory (the node does when it starts).
func (l *loader) spoolDir(node string) string {
	var candidates []string
	if xdg, ok := l.env("XDG_DATA_HOME"); ok && filepath.IsAbs(xdg) {
		candidates = append(candidates, filepath.Join(xdg, "serverledge", "spool"))
	} else if home, ok := l.env("HOME"); ok && filepath.IsAbs(home) {
		candidates = append(candidates, filepath.Join(home, ".local", "share", "serverledge", "spool"))
	}
	for _, dir := range candidates {
		if writable(dir) {
			return filepath.Join(dir, node)
		}
	}
	return filepath.Join(l.tmpDir, "serverledge-spool-"+strconv.Itoa(os.Getuid()), node)
}

func (l *loader) host() string {
	h, err := l.hostname()
	if err != nil || h == "" {
		return "node"
	}
	return h
}

// maxHostPart bounds the host name part of a default node name, leaving
// room for "-<port>" within the 128 characters nameRE allows.
const maxHostPart = 120

// sanitizeName replaces the characters a node name may not hold with '-'
// and makes sure it starts with a letter or digit.
func sanitizeName(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if !isAlnum(ch) && ch != '.' && ch != '_' && ch != '-' {
			b[i] = '-'
		}
	}
	if len(b) == 0 || !isAlnum(b[0]) {
		b = append([]byte("node"), b...)
	}
	if len(b) > maxHostPart {
		b = b[:maxHostPart]
	}
	return string(b)
}

func isAlnum(ch byte) bool {
	return ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9'
}

// embeddedDir returns the first writable default data directory of the
// embedded etcd, creating it. When probe is false (an external etcd is
// used) the preferred directory is returned without touching the disk.
func (l *loader) embeddedDir(probe bool) string {
	var candidates []string
	if xdg, ok := l.env("XDG_DATA_HOME"); ok && filepath.IsAbs(xdg) {
		candidates = append(candidates, filepath.Join(xdg, "serverledge", "etcd"))
	} else if home, ok := l.env("HOME"); ok && filepath.IsAbs(home) {
		candidates = append(candidates, filepath.Join(home, ".local", "share", "serverledge", "etcd"))
	}
	fallback := filepath.Join(l.tmpDir, "serverledge-etcd-"+strconv.Itoa(os.Getuid()))
	if !probe {
		if len(candidates) > 0 {
			return candidates[0]
		}
		return fallback
	}
	for _, dir := range candidates {
		if writable(dir) {
			return dir
		}
	}
	return fallback
}

// writable creates dir if needed and reports whether a file can be created in it.
func writable(dir string) bool {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return false
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return true
}

// validate checks ranges and relations between keys, recording one error
// per bad key.
func validate(s *state) {
	c := &s.cfg
	bad := func(key, format string, args ...any) {
		s.fail(key, s.sources[key], ErrInvalidValue, fmt.Sprintf(format, args...))
	}

	for _, ep := range c.Etcd.Endpoints {
		if err := checkEndpoint(ep); err != nil {
			bad("etcd.address", "endpoint %q: %v", ep, err)
		}
	}
	checkPort(bad, "etcd.embedded.client_port", c.Etcd.Embedded.ClientPort)
	checkPort(bad, "etcd.embedded.peer_port", c.Etcd.Embedded.PeerPort)
	if c.Etcd.UseEmbedded() {
		if c.Etcd.Embedded.PeerPort == c.Etcd.Embedded.ClientPort {
			bad("etcd.embedded.peer_port", "must differ from etcd.embedded.client_port (%d)", c.Etcd.Embedded.ClientPort)
		}
		if c.API.Port == c.Etcd.Embedded.ClientPort || c.API.Port == c.Etcd.Embedded.PeerPort {
			bad("api.port", "%d is also a port of the embedded etcd (etcd.embedded.client_port, etcd.embedded.peer_port)", c.API.Port)
		}
	}

	if ip := net.ParseIP(c.API.IP); ip == nil {
		bad("api.ip", "expected an IP address, got %q", c.API.IP)
	} else if ip.IsUnspecified() {
		bad("api.ip", "%s cannot be advertised to other nodes; give this host's address", c.API.IP)
	}
	checkPort(bad, "api.port", c.API.Port)
	if c.API.MaxBodyBytes <= 0 {
		bad("api.max.body", "must be positive, got %d", c.API.MaxBodyBytes)
	}
	if h := c.API.MaxHeaderBytes; h < 4<<10 || h > 16<<20 {
		bad("api.max.header", "must be between 4KiB and 16MiB, got %d bytes", h)
	}
	to := c.API.Timeouts
	checkPositive(bad, "api.timeout.header", to.ReadHeader)
	checkPositive(bad, "api.timeout.read", to.Read)
	checkPositive(bad, "api.timeout.write", to.Write)
	checkPositive(bad, "api.timeout.idle", to.Idle)
	if to.ReadHeader > 0 && to.Read > 0 && to.ReadHeader > to.Read {
		bad("api.timeout.header", "must not exceed api.timeout.read (%v), got %v", to.Read, to.ReadHeader)
	}
	if to.Read > 0 && to.Write > 0 && to.Write < to.Read {
		bad("api.timeout.write", "must be at least api.timeout.read (%v), got %v", to.Read, to.Write)
	}
	if c.API.MaxUploads < 1 {
		bad("api.uploads.max", "must be 1 or more, got %d", c.API.MaxUploads)
	}
	if c.API.UploadThreshold <= 0 {
		bad("api.uploads.threshold", "must be positive, got %d", c.API.UploadThreshold)
	}

	if !nameRE.MatchString(c.Node.Name) {
		bad("node.name", "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit, got %q", c.Node.Name)
	}
	if !nameRE.MatchString(c.Registry.Area) {
		bad("registry.area", "must be 1 to 128 letters, digits, '.', '_' or '-', starting with a letter or digit, got %q", c.Registry.Area)
	}
	if c.Cloud.ServerURL != "" {
		if err := checkHTTPURL(c.Cloud.ServerURL); err != nil {
			bad("cloud.server.url", "%v", err)
		}
	}
	checkWholeSeconds(bad, "registry.ttl", c.Registry.TTL)
	if c.Registry.CodeCacheMB < 0 || c.Registry.CodeCacheMB > 1<<20 {
		bad("registry.code.cache.mb", "must be between 0 and %d, got %d", 1<<20, c.Registry.CodeCacheMB)
	}

	if c.Container.PoolMemoryMB <= 0 {
		bad("container.pool.memory", "must be positive, got %d", c.Container.PoolMemoryMB)
	}
	if c.Container.PoolCPUs <= 0 {
		bad("container.pool.cpus", "must be positive, got %g", c.Container.PoolCPUs)
	}
	checkPositive(bad, "container.expiration", c.Container.Expiration)
	checkPositive(bad, "janitor.interval", c.Janitor.Interval)
	if c.Container.StemcellMemoryMB < function.MinMemoryMB {
		bad("container.stemcell.memory", "must be at least %d MB, got %d", function.MinMemoryMB, c.Container.StemcellMemoryMB)
	}
	total := 0
	for _, n := range c.Container.Stemcells {
		total += n
	}
	if c.Container.PoolMemoryMB > 0 && int64(total)*c.Container.StemcellMemoryMB > c.Container.PoolMemoryMB {
		bad("container.stemcells", "%d stem cells of %d MB (container.stemcell.memory) exceed container.pool.memory (%d MB)",
			total, c.Container.StemcellMemoryMB, c.Container.PoolMemoryMB)
	}
	if c.Container.Network == "" {
		bad("container.network", "must not be empty")
	}
	if n := c.Container.TmpSizeBytes; n < 1<<20 || n > 16<<30 || n%(1<<20) != 0 {
		bad("container.tmp.size", "must be a whole number of MiB from 1MiB to 16GiB, got %d bytes", n)
	}
	if !filepath.IsAbs(c.Container.RunDir) {
		bad("container.rundir", "must be an absolute path, got %q", c.Container.RunDir)
	}
	checkPositive(bad, "container.start.timeout", c.Container.StartTimeout)

	if c.Scheduler.QueueCapacity < 0 {
		bad("scheduler.queue.capacity", "must be 0 (no queue) or more, got %d", c.Scheduler.QueueCapacity)
	}
	checkPositive(bad, "scheduler.queue.maxwait", c.Scheduler.QueueMaxWait)
	if r := c.Scheduler.ReservedPerformance; r < 0 || r >= 1 {
		bad("scheduler.reserved.performance", "must be at least 0 and below 1, got %g", r)
	}
	if h := c.Scheduler.MaxHops; h < 0 || h > 16 {
		bad("scheduler.max.hops", "must be between 0 and 16, got %d", h)
	}

	if !strings.HasPrefix(c.Metrics.Path, "/") {
		bad("metrics.path", "must start with '/', got %q", c.Metrics.Path)
	}
	if c.Metrics.MaxFunctions < 1 || c.Metrics.MaxFunctions > 10000 {
		bad("metrics.functions.max", "must be between 1 and 10000, got %d", c.Metrics.MaxFunctions)
	}
	checkWholeSeconds(bad, "async.result.ttl", c.Async.ResultTTL)
	if !filepath.IsAbs(c.Async.SpoolDir) {
		bad("async.spool.dir", "must be an absolute path, got %q", c.Async.SpoolDir)
	}
	if c.Async.SpoolMaxBytes <= 0 {
		bad("async.spool.max", "must be positive, got %d", c.Async.SpoolMaxBytes)
	}
	checkPositive(bad, "shutdown.timeout", c.Shutdown.Timeout)
}

type badFunc func(key, format string, args ...any)

func checkPort(bad badFunc, key string, port int) {
	if port < 1 || port > 65535 {
		bad(key, "must be a port between 1 and 65535, got %d", port)
	}
}

func checkPositive(bad badFunc, key string, d time.Duration) {
	if d <= 0 {
		bad(key, "must be a positive duration, got %v", d)
	}
}

// checkWholeSeconds checks durations that become etcd lease TTLs.
func checkWholeSeconds(bad badFunc, key string, d time.Duration) {
	if d < time.Second || d%time.Second != 0 {
		bad(key, "must be a whole number of seconds, at least 1, got %v", d)
	}
}

// checkEndpoint accepts "host:port" and "http(s)://host:port".
func checkEndpoint(ep string) error {
	hostPort := ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return fmt.Errorf("not a URL: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("scheme must be http or https")
		}
		hostPort = u.Host
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || host == "" {
		return fmt.Errorf("expected host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port must be between 1 and 65535")
	}
	return nil
}

// checkHTTPURL accepts absolute http and https URLs with a host.
func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("expected an http:// or https:// URL, got %q", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("URL %q has no host", raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("URL %q has an invalid port", raw)
		}
	}
	return nil
}
