// Package config holds the configuration of a Serverledge node: one struct
// with defaults, loaded from a YAML file, the environment and command-line
// flags, and validated before the node starts.
//
// Every setting has a flat dotted key (for example "api.port"). The keys, their
// types, defaults and meanings live in a single table in this package and are
// documented in docs/configuration.md.
package config

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors callers branch on. Every error returned by Load is a
// *KeyError (or several joined with errors.Join) that wraps one of them.
var (
	// ErrHelp is returned by Load when --help or -h is given; print Usage().
	ErrHelp = errors.New("help requested")
	// ErrUnknownKey is wrapped by errors about keys that do not exist.
	ErrUnknownKey = errors.New("unknown key")
	// ErrInvalidValue is wrapped by errors about values of the wrong type or out of range.
	ErrInvalidValue = errors.New("invalid value")
	// ErrConfigFile is wrapped by errors about the configuration file itself
	// (missing, unreadable, not YAML, a key given twice).
	ErrConfigFile = errors.New("configuration file error")
)

// FileName is the configuration file name searched for when none is given.
const FileName = "serverledge-conf.yaml"

// EnvPrefix starts the name of every environment variable read by Load.
const EnvPrefix = "SERVERLEDGE_"

// Policy names a scheduling policy (key scheduler.policy).
type Policy string

// Scheduling policies.
const (
	// PolicyLocalOnly runs every request on this node.
	PolicyLocalOnly Policy = "localonly"
	// PolicyEdgeOnly tries neighbour edge nodes first, then this node.
	PolicyEdgeOnly Policy = "edgeonly"
	// PolicyCloudOnly sends every request to the cloud.
	PolicyCloudOnly Policy = "cloudonly"
	// PolicyEdgeCloud runs locally when possible, else in the cloud.
	PolicyEdgeCloud Policy = "edgecloud"
	// PolicyDefault is the QoS-aware policy that uses all the options above.
	PolicyDefault Policy = "default"
)

// Policies lists every known scheduling policy.
func Policies() []Policy {
	return []Policy{PolicyLocalOnly, PolicyEdgeOnly, PolicyCloudOnly, PolicyEdgeCloud, PolicyDefault}
}

// Config is the complete configuration of a node.
type Config struct {
	// File is the configuration file that was read, or "" when none was.
	File string

	Etcd      Etcd
	API       API
	Node      Node
	Cloud     Cloud
	Registry  Registry
	Container Container
	Janitor   Janitor
	Scheduler Scheduler
	Metrics   Metrics
	Async     Async
	Shutdown  Shutdown
	Log       Log
	Debug     Debug
}

// Etcd configures the connection to the global registry.
type Etcd struct {
	// Endpoints are the etcd client endpoints (key etcd.address); empty
	// means the node starts an embedded etcd.
	Endpoints []string
	// Embedded configures the embedded etcd.
	Embedded EmbeddedEtcd
}

// UseEmbedded reports whether the node must start an embedded etcd.
func (e Etcd) UseEmbedded() bool {
	return len(e.Endpoints) == 0
}

// EmbeddedEtcd configures the etcd a node starts when no etcd.address is given.
type EmbeddedEtcd struct {
	// Dir is the data directory (key etcd.embedded.dir).
	Dir string
	// ClientPort is the client port (key etcd.embedded.client_port).
	ClientPort int
	// PeerPort is the peer port (key etcd.embedded.peer_port).
	PeerPort int
}

// API configures the node's HTTP API.
type API struct {
	// IP is the address the node listens on and advertises (key api.ip).
	IP string
	// Port is the HTTP port (key api.port).
	Port int
	// MaxBodyBytes is the largest request body accepted (key api.max.body).
	MaxBodyBytes int64
	// MaxHeaderBytes is the largest request header block accepted (key api.max.header).
	MaxHeaderBytes int64
	// Timeouts are the HTTP server's timeouts (keys api.timeout.*).
	Timeouts APITimeouts
	// MaxUploads bounds the large request bodies read at once (key api.uploads.max).
	MaxUploads int
	// UploadThreshold is the body size above which a request counts
	// against MaxUploads (key api.uploads.threshold).
	UploadThreshold int64
}

// APITimeouts are the HTTP server's timeouts.
type APITimeouts struct {
	// ReadHeader bounds receiving a request's headers (key api.timeout.header).
	ReadHeader time.Duration
	// Read bounds receiving a whole request (key api.timeout.read).
	Read time.Duration
	// Write bounds a response, from the end of the request's headers (key api.timeout.write).
	Write time.Duration
	// Idle bounds an idle keep-alive connection (key api.timeout.idle).
	Idle time.Duration
}

// Node identifies the node.
type Node struct {
	// Name labels the node's containers and its registry entry (key node.name).
	Name string
}

// Cloud configures the node's place in the edge-cloud continuum.
type Cloud struct {
	// Enabled is true for a cloud node, false for an edge node (key cloud).
	Enabled bool
	// ServerURL is the URL of the cloud load balancer that edge nodes
	// offload to; "" when there is none (key cloud.server.url).
	ServerURL string
}

// Registry configures the node's membership in the registry.
type Registry struct {
	// Area is the edge zone or cloud region of the node (key registry.area).
	Area string
	// TTL is the lease of the node's registry entry (key registry.ttl).
	TTL time.Duration
	// CodeCacheMB bounds the memory of the code cache, in MB (key registry.code.cache.mb).
	CodeCacheMB int64
}

// Container configures the warm pool of function containers.
type Container struct {
	// PoolMemoryMB is the memory available to containers, in MB (key container.pool.memory).
	PoolMemoryMB int64
	// PoolCPUs is the CPU available to containers, in cores (key container.pool.cpus).
	PoolCPUs float64
	// Expiration is how long an idle warm container is kept (key container.expiration).
	Expiration time.Duration
	// Stemcells maps a canonical runtime name to the number of
	// function-agnostic containers kept ready (key container.stemcells).
	Stemcells map[string]int
	// StemcellMemoryMB is the memory of one stem cell, in MB (key container.stemcell.memory).
	StemcellMemoryMB int64
	// Network is the Docker network containers join (key container.network).
	Network string
	// RunDir is the host directory for executor sockets (key container.rundir).
	RunDir string
	// TmpSizeBytes is the size of each function container's /tmp tmpfs
	// (key container.tmp.size).
	TmpSizeBytes int64
	// StartTimeout bounds a container start (key container.start.timeout).
	StartTimeout time.Duration
}

// Janitor configures the periodic clean-up of expired containers.
type Janitor struct {
	// Interval is the time between two clean-ups (key janitor.interval).
	Interval time.Duration
}

// Scheduler configures scheduling decisions.
type Scheduler struct {
	// Policy is the scheduling policy (key scheduler.policy).
	Policy Policy
	// QueueCapacity is the number of requests that may wait for local
	// resources; 0 disables the queue (key scheduler.queue.capacity).
	QueueCapacity int
	// QueueMaxWait is the longest a request waits in the queue (key scheduler.queue.maxwait).
	QueueMaxWait time.Duration
	// ReservedPerformance is the fraction of pool memory kept for
	// performance requests (key scheduler.reserved.performance).
	ReservedPerformance float64
	// MaxHops is how many times a request may be offloaded (key scheduler.max.hops).
	MaxHops int
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Enabled exposes metrics when true (key metrics.enabled).
	Enabled bool
	// Path is the HTTP path of the metrics endpoint (key metrics.path).
	Path string
	// MaxFunctions bounds the distinct function label values (key metrics.functions.max).
	MaxFunctions int
}

// Async configures asynchronous invocations.
type Async struct {
	// ResultTTL is how long an asynchronous result can be polled (key async.result.ttl).
	ResultTTL time.Duration
	// SpoolDir keeps results the registry cannot take yet (key async.spool.dir).
	SpoolDir string
	// SpoolMaxBytes bounds the spool (key async.spool.max).
	SpoolMaxBytes int64
}

// Shutdown configures the node's graceful shutdown.
type Shutdown struct {
	// Timeout bounds the graceful shutdown (key shutdown.timeout).
	Timeout time.Duration
}

// Log configures logging.
type Log struct {
	// Level is the lowest level logged (key log.level).
	Level slog.Level
}

// Debug configures diagnostics that are off in production.
type Debug struct {
	// Pprof serves net/http/pprof under /debug/pprof/ on the API port (key debug.pprof).
	Pprof bool
}

// APIURL returns the URL other nodes and clients use to reach this node,
// for example "http://127.0.0.1:1323".
func (c *Config) APIURL() string {
	return "http://" + net.JoinHostPort(c.API.IP, strconv.Itoa(c.API.Port))
}

// KeyError reports a problem with one configuration key. Its message starts
// with the key name and ends with where the value came from.
type KeyError struct {
	// Key is the dotted key name ("config" for the configuration file itself).
	Key string
	// Source says where the value came from, e.g. "env SERVERLEDGE_API_PORT";
	// "" for a default value.
	Source string
	// Msg says what is wrong.
	Msg string
	// Kind is the sentinel error (ErrUnknownKey, ErrInvalidValue, ErrConfigFile).
	Kind error
	// Cause is the underlying error, if any.
	Cause error
}

// Error returns "key: message (source)".
func (e *KeyError) Error() string {
	var b strings.Builder
	b.WriteString(e.Key)
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Source != "" {
		b.WriteString(" (")
		b.WriteString(e.Source)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the sentinel kind and the cause.
func (e *KeyError) Unwrap() []error {
	errs := []error{e.Kind}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// Load builds the configuration from defaults, a YAML file, the environment
// and the command-line arguments, in increasing order of precedence, and
// validates it. args are the command-line arguments without the program name;
// env looks up an environment variable (nil means os.LookupEnv).
//
// The file is the first positional argument or the value of --config; when
// neither is given, FileName is searched in /etc/serverledge, $HOME and the
// working directory, and the first one found is read (none is fine).
//
// Load returns every problem it finds, joined with errors.Join, so a user sees
// all bad keys at once. It returns ErrHelp when --help or -h is given.
func Load(args []string, env func(string) (string, bool)) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	l := &loader{
		env:        env,
		searchDirs: defaultSearchDirs(env),
		hostname:   os.Hostname,
		tmpDir:     "/tmp",
	}
	return l.load(args)
}

// loader carries the parts of the host Load looks at, so tests can replace them.
type loader struct {
	env        func(string) (string, bool)
	searchDirs []string
	hostname   func() (string, error)
	tmpDir     string
}

// state accumulates values and errors while sources are applied.
type state struct {
	cfg     Config
	sources map[string]string
	errs    []error
}

func (s *state) fail(key, source string, kind error, msg string) {
	s.errs = append(s.errs, &KeyError{Key: key, Source: source, Kind: kind, Msg: msg})
}

// set applies one raw value for a known key and records where it came from.
func (s *state) set(k *keyDef, raw, source string) {
	if err := k.set(&s.cfg, raw); err != nil {
		s.errs = append(s.errs, &KeyError{Key: k.name, Source: source, Kind: ErrInvalidValue, Msg: err.Error()})
		return
	}
	s.sources[k.name] = source
}

func (l *loader) load(args []string) (*Config, error) {
	s := &state{sources: map[string]string{}}
	for i := range keys {
		if err := keys[i].set(&s.cfg, keys[i].def); err != nil {
			return nil, &KeyError{Key: keys[i].name, Source: "built-in default", Kind: ErrInvalidValue, Msg: err.Error()}
		}
	}

	flags, path, err := parseArgs(args)
	if err != nil {
		return nil, err
	}

	if path == "" {
		path = l.findFile()
	} else if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if path != "" {
		s.cfg.File = path
		if err := readFile(s, path); err != nil {
			return nil, err
		}
	}

	for i := range keys {
		k := &keys[i]
		name := envName(k.name)
		if v, ok := l.env(name); ok {
			s.set(k, v, "env "+name)
		}
	}

	for _, f := range flags {
		s.set(lookupKey(f.name), f.value, "flag --"+f.name)
	}

	l.resolveDerived(s)
	validate(s)
	if len(s.errs) > 0 {
		return nil, errors.Join(s.errs...)
	}
	cfg := s.cfg
	return &cfg, nil
}

// envName returns the environment variable that sets key.
func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}
