package config

import (
	"runtime"
	"strconv"
	"time"
)

// Value types shown in docs and --help.
const (
	typeString   = "string"
	typeList     = "list"
	typeInt      = "int"
	typeFloat    = "float"
	typeBool     = "bool"
	typeDuration = "duration"
	typeBytes    = "bytes"
	typeMap      = "map"
	typeEnum     = "enum"
)

// keyDef describes one configuration key. The table below is the single
// source of truth: defaults are applied through set, --help is generated from
// it, and a test checks docs/configuration.md against it.
type keyDef struct {
	// name is the dotted key.
	name string
	// typ is the value type shown in docs and --help.
	typ string
	// def is the default value, applied through set at start.
	def string
	// defDoc describes the default in docs when it is computed at run time.
	defDoc string
	// doc says what the key means, in one sentence.
	doc string
	// set parses raw and stores it in the config; its error says what was
	// expected, without the key name.
	set func(c *Config, raw string) error
}

// docDefault returns the default as shown in docs/configuration.md and --help.
func (k *keyDef) docDefault() string {
	if k.defDoc != "" {
		return k.defDoc
	}
	if k.def == "" {
		return "empty"
	}
	return "`" + k.def + "`"
}

// keys is the table of every configuration key, in documentation order.
var keys = []keyDef{
	{
		name: "etcd.address", typ: typeList, def: "",
		doc: "Comma-separated etcd client endpoints (`host:port` or `http://host:port`); empty starts an embedded etcd.",
		set: setList(func(c *Config) *[]string { return &c.Etcd.Endpoints }),
	},
	{
		name: "etcd.embedded.dir", typ: typeString, def: "",
		defDoc: "`$XDG_DATA_HOME/serverledge/etcd`, else `~/.local/share/serverledge/etcd`, else `/tmp/serverledge-etcd-<uid>`",
		doc:    "Data directory of the embedded etcd; the first writable default is used and created.",
		set:    setString(func(c *Config) *string { return &c.Etcd.Embedded.Dir }),
	},
	{
		name: "etcd.embedded.client_port", typ: typeInt, def: "2379",
		doc: "Client port of the embedded etcd.",
		set: setInt(func(c *Config) *int { return &c.Etcd.Embedded.ClientPort }),
	},
	{
		name: "etcd.embedded.peer_port", typ: typeInt, def: "2380",
		doc: "Peer port of the embedded etcd.",
		set: setInt(func(c *Config) *int { return &c.Etcd.Embedded.PeerPort }),
	},
	{
		name: "api.ip", typ: typeString, def: "127.0.0.1",
		doc: "IP address the node listens on and advertises to other nodes and clients.",
		set: setString(func(c *Config) *string { return &c.API.IP }),
	},
	{
		name: "api.port", typ: typeInt, def: "1323",
		doc: "HTTP port of the node's API.",
		set: setInt(func(c *Config) *int { return &c.API.Port }),
	},
	{
		name: "api.max.body", typ: typeBytes, def: "32MiB",
		doc: "Largest request body the API accepts.",
		set: setBytes(func(c *Config) *int64 { return &c.API.MaxBodyBytes }),
	},
	{
		name: "api.max.header", typ: typeBytes, def: "64KiB",
		doc: "Largest request header block the API accepts.",
		set: setBytes(func(c *Config) *int64 { return &c.API.MaxHeaderBytes }),
	},
	{
		name: "api.timeout.header", typ: typeDuration, def: "10s",
		doc: "Longest time to receive a request's headers; a connection that sends them slower is closed.",
		set: setDuration(func(c *Config) *time.Duration { return &c.API.Timeouts.ReadHeader }),
	},
	{
		name: "api.timeout.read", typ: typeDuration, def: "60s",
		doc: "Longest time to receive a whole request, body included.",
		set: setDuration(func(c *Config) *time.Duration { return &c.API.Timeouts.Read }),
	},
	{
		name: "api.timeout.write", typ: typeDuration, def: "90s",
		doc: "Longest time from the end of a request's headers to the end of its response, at least `api.timeout.read`; synchronous invocations and prewarms get longer (see below).",
		set: setDuration(func(c *Config) *time.Duration { return &c.API.Timeouts.Write }),
	},
	{
		name: "api.timeout.idle", typ: typeDuration, def: "120s",
		doc: "How long an idle keep-alive connection is kept open.",
		set: setDuration(func(c *Config) *time.Duration { return &c.API.Timeouts.Idle }),
	},
	{
		name: "api.uploads.max", typ: typeInt, def: "8",
		doc: "Request bodies larger than `api.uploads.threshold` (or of undeclared length) read at once; one more waits up to a second, then gets 503.",
		set: setInt(func(c *Config) *int { return &c.API.MaxUploads }),
	},
	{
		name: "api.uploads.threshold", typ: typeBytes, def: "64KiB",
		doc: "Body size above which a request counts against `api.uploads.max`.",
		set: setBytes(func(c *Config) *int64 { return &c.API.UploadThreshold }),
	},
	{
		name: "node.name", typ: typeString, def: "",
		defDoc: "`<hostname>-<api.port>`",
		doc:    "Name of the node, stable across restarts; it labels the node's containers and its registry entry.",
		set:    setString(func(c *Config) *string { return &c.Node.Name }),
	},
	{
		name: "cloud", typ: typeBool, def: "false",
		doc: "True for a cloud node, false for an edge node.",
		set: setBool(func(c *Config) *bool { return &c.Cloud.Enabled }),
	},
	{
		name: "cloud.server.url", typ: typeString, def: "",
		doc: "URL of the cloud load balancer edge nodes offload to; empty disables vertical offloading.",
		set: setString(func(c *Config) *string { return &c.Cloud.ServerURL }),
	},
	{
		name: "registry.area", typ: typeString, def: "default",
		doc: "Edge zone (edge node) or cloud region (cloud node) the node registers under.",
		set: setString(func(c *Config) *string { return &c.Registry.Area }),
	},
	{
		name: "registry.ttl", typ: typeDuration, def: "10s",
		doc: "Lease of the node's registry entry, in whole seconds; a node that stops renewing it disappears after this long.",
		set: setDuration(func(c *Config) *time.Duration { return &c.Registry.TTL }),
	},
	{
		name: "registry.code.cache.mb", typ: typeInt, def: "64",
		doc: "Memory in MB for the code of recently cold-started functions, kept by version so that the next cold start need not read it from etcd; 0 keeps none.",
		set: setInt64(func(c *Config) *int64 { return &c.Registry.CodeCacheMB }),
	},
	{
		name: "container.pool.memory", typ: typeInt, def: "4096",
		doc: "Memory in MB available to function containers and stem cells on this node.",
		set: setInt64(func(c *Config) *int64 { return &c.Container.PoolMemoryMB }),
	},
	{
		name: "container.pool.cpus", typ: typeFloat, def: strconv.Itoa(runtime.NumCPU()),
		defDoc: "number of host CPUs",
		doc:    "CPU cores available to function containers on this node.",
		set:    setFloat(func(c *Config) *float64 { return &c.Container.PoolCPUs }),
	},
	{
		name: "container.expiration", typ: typeDuration, def: "10m",
		doc: "How long an idle warm container is kept before it is removed.",
		set: setDuration(func(c *Config) *time.Duration { return &c.Container.Expiration }),
	},
	{
		name: "janitor.interval", typ: typeDuration, def: "30s",
		doc: "Time between two sweeps that remove expired idle containers, containers of this node the pool does not own, and pool containers Docker no longer runs.",
		set: setDuration(func(c *Config) *time.Duration { return &c.Janitor.Interval }),
	},
	{
		name: "container.stemcells", typ: typeMap, def: "python:1",
		doc: "Function-agnostic runtime containers kept ready, as `runtime:count` pairs separated by commas (aliases accepted; empty for none).",
		set: setStemcells,
	},
	{
		name: "container.stemcell.memory", typ: typeInt, def: "128",
		doc: "Memory in MB of one stem cell, counted against `container.pool.memory`.",
		set: setInt64(func(c *Config) *int64 { return &c.Container.StemcellMemoryMB }),
	},
	{
		name: "container.network", typ: typeString, def: "bridge",
		doc: "Docker network function containers join.",
		set: setString(func(c *Config) *string { return &c.Container.Network }),
	},
	{
		name: "container.tmp.size", typ: typeBytes, def: "64MiB",
		doc: "Size of the writable `/tmp` (a tmpfs, counted in the container's memory) of each function container; whole MiB, 1MiB to 16GiB.",
		set: setBytes(func(c *Config) *int64 { return &c.Container.TmpSizeBytes }),
	},
	{
		name: "container.rundir", typ: typeString, def: "/tmp/serverledge-run",
		doc: "Absolute host directory holding the executor sockets of the node's containers.",
		set: setString(func(c *Config) *string { return &c.Container.RunDir }),
	},
	{
		name: "container.start.timeout", typ: typeDuration, def: "20s",
		doc: "Longest wait for a new container's executor to become ready.",
		set: setDuration(func(c *Config) *time.Duration { return &c.Container.StartTimeout }),
	},
	{
		name: "scheduler.policy", typ: typeEnum, def: string(PolicyDefault),
		doc: "Scheduling policy: `localonly`, `edgeonly`, `cloudonly`, `edgecloud` or `default` (QoS-aware).",
		set: setPolicy,
	},
	{
		name: "scheduler.queue.capacity", typ: typeInt, def: "100",
		doc: "Requests that may wait for local resources at once; 0 disables the queue.",
		set: setInt(func(c *Config) *int { return &c.Scheduler.QueueCapacity }),
	},
	{
		name: "scheduler.queue.maxwait", typ: typeDuration, def: "30s",
		doc: "Longest time a request waits in the queue before it is rejected with 429.",
		set: setDuration(func(c *Config) *time.Duration { return &c.Scheduler.QueueMaxWait }),
	},
	{
		name: "scheduler.reserved.performance", typ: typeFloat, def: "0.2",
		doc: "Fraction of pool memory, from 0 up to but not including 1, kept for `performance` requests.",
		set: setFloat(func(c *Config) *float64 { return &c.Scheduler.ReservedPerformance }),
	},
	{
		name: "scheduler.max.hops", typ: typeInt, def: "2",
		doc: "How many times one request may be offloaded (0 to 16); 0 never offloads.",
		set: setInt(func(c *Config) *int { return &c.Scheduler.MaxHops }),
	},
	{
		name: "metrics.enabled", typ: typeBool, def: "false",
		doc: "Expose Prometheus metrics on the API port at `metrics.path`.",
		set: setBool(func(c *Config) *bool { return &c.Metrics.Enabled }),
	},
	{
		name: "metrics.path", typ: typeString, def: "/metrics",
		doc: "HTTP path of the Prometheus metrics endpoint.",
		set: setString(func(c *Config) *string { return &c.Metrics.Path }),
	},
	{
		name: "metrics.functions.max", typ: typeInt, def: "100",
		doc: "Most distinct function names used as a metric label (1 to 10000); further functions are counted under `_other`.",
		set: setInt(func(c *Config) *int { return &c.Metrics.MaxFunctions }),
	},
	{
		name: "async.result.ttl", typ: typeDuration, def: "1h",
		doc: "How long the result of an asynchronous invocation can be polled, in whole seconds.",
		set: setDuration(func(c *Config) *time.Duration { return &c.Async.ResultTTL }),
	},
	{
		name: "async.spool.dir", typ: typeString, def: "",
		defDoc: "`$XDG_DATA_HOME/serverledge/spool/<node.name>`, else `~/.local/share/serverledge/spool/<node.name>`, else `/tmp/serverledge-spool-<uid>/<node.name>`",
		doc:    "Directory where the node keeps asynchronous results the registry cannot take, until it does; created if needed.",
		set:    setString(func(c *Config) *string { return &c.Async.SpoolDir }),
	},
	{
		name: "async.spool.max", typ: typeBytes, def: "64MiB",
		doc: "Largest total size of the results kept in `async.spool.dir`; a result beyond it is logged and lost.",
		set: setBytes(func(c *Config) *int64 { return &c.Async.SpoolMaxBytes }),
	},
	{
		name: "shutdown.timeout", typ: typeDuration, def: "10s",
		doc: "Longest time a graceful shutdown (SIGINT or SIGTERM) may take.",
		set: setDuration(func(c *Config) *time.Duration { return &c.Shutdown.Timeout }),
	},
	{
		name: "log.level", typ: typeEnum, def: "info",
		doc: "Lowest level logged: `debug`, `info`, `warn` or `error`.",
		set: setLogLevel,
	},
	{
		name: "debug.pprof", typ: typeBool, def: "false",
		doc: "Serve Go's runtime profiles (`net/http/pprof`) under `/debug/pprof/` on the API port, for profiling; leave off on a reachable port.",
		set: setBool(func(c *Config) *bool { return &c.Debug.Pprof }),
	},
}

// keyIndex maps a key name to its definition.
var keyIndex = func() map[string]*keyDef {
	m := make(map[string]*keyDef, len(keys))
	for i := range keys {
		m[keys[i].name] = &keys[i]
	}
	return m
}()

// lookupKey returns the definition of name, or nil when there is none.
func lookupKey(name string) *keyDef {
	return keyIndex[name]
}

// KeyNames returns every configuration key, in documentation order.
func KeyNames() []string {
	names := make([]string, len(keys))
	for i := range keys {
		names[i] = keys[i].name
	}
	return names
}
