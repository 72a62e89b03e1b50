package config

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testEnv returns an environment lookup over m.
func testEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// newTestLoader returns a loader isolated from the host: a temporary HOME and
// XDG_DATA_HOME, host name "testhost", and only the given search directories.
func newTestLoader(t *testing.T, env map[string]string, searchDirs ...string) (*loader, string) {
	t.Helper()
	home := t.TempDir()
	e := map[string]string{"HOME": home, "XDG_DATA_HOME": filepath.Join(home, "data")}
	for k, v := range env {
		e[k] = v
	}
	return &loader{
		env:        testEnv(e),
		searchDirs: searchDirs,
		hostname:   func() (string, error) { return "testhost", nil },
		tmpDir:     t.TempDir(),
	}, home
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// defaultConfig is what a node runs with when nothing is configured.
func defaultConfig(home string) Config {
	return Config{
		Etcd: Etcd{Embedded: EmbeddedEtcd{
			Dir:        filepath.Join(home, "data", "serverledge", "etcd"),
			ClientPort: 2379,
			PeerPort:   2380,
		}},
		API: API{IP: "127.0.0.1", Port: 1323, MaxBodyBytes: 32 << 20, MaxHeaderBytes: 64 << 10,
			Timeouts:   APITimeouts{ReadHeader: 10 * time.Second, Read: time.Minute, Write: 90 * time.Second, Idle: 2 * time.Minute},
			MaxUploads: 8, UploadThreshold: 64 << 10},
		Node:     Node{Name: "testhost-1323"},
		Registry: Registry{Area: "default", TTL: 10 * time.Second, CodeCacheMB: 64},
		Container: Container{
			PoolMemoryMB:     4096,
			PoolCPUs:         float64(runtime.NumCPU()),
			Expiration:       600 * time.Second,
			Stemcells:        map[string]int{"python": 1},
			StemcellMemoryMB: 128,
			Network:          "bridge",
			RunDir:           "/tmp/serverledge-run",
			TmpSizeBytes:     64 << 20,
			StartTimeout:     20 * time.Second,
		},
		Janitor: Janitor{Interval: 30 * time.Second},
		Scheduler: Scheduler{
			Policy:              PolicyDefault,
			QueueCapacity:       100,
			QueueMaxWait:        30 * time.Second,
			ReservedPerformance: 0.2,
			MaxHops:             2,
		},
		Metrics: Metrics{Path: "/metrics", MaxFunctions: 100},
		Async: Async{ResultTTL: time.Hour, SpoolMaxBytes: 64 << 20,
			SpoolDir: filepath.Join(home, "data", "serverledge", "spool", "testhost-1323")},
		Shutdown: Shutdown{Timeout: 10 * time.Second},
		Log:      Log{Level: slog.LevelInfo},
	}
}

func TestDefaults(t *testing.T) {
	l, home := newTestLoader(t, nil)
	cfg, err := l.load(nil)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	want := defaultConfig(home)
	if !reflect.DeepEqual(*cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *cfg, want)
	}
	if got := cfg.APIURL(); got != "http://127.0.0.1:1323" {
		t.Errorf("APIURL() = %q", got)
	}
	if !cfg.Etcd.UseEmbedded() {
		t.Error("UseEmbedded() = false without etcd.address")
	}
	if fi, err := os.Stat(cfg.Etcd.Embedded.Dir); err != nil || !fi.IsDir() {
		t.Errorf("embedded etcd dir %s was not created: %v", cfg.Etcd.Embedded.Dir, err)
	}
}

// TestLoad covers the sources, their precedence and the values they set.
func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		file string // written to a temporary file passed with --config, unless empty
		args []string
		env  map[string]string
		// edit turns the default config into the expected one.
		edit func(c *Config, file string)
	}{
		{
			name: "file with flat keys as written by existing deployments",
			file: `
etcd.address: "127.0.0.1:2379"
api.port: 1400
container.pool.memory: 2048
cloud: true
cloud.server.url: "http://127.0.0.1:1326"
registry.area: "ROME"
scheduler.policy: edgecloud
container.expiration: 1m
api.max.body: 1MiB
`,
			edit: func(c *Config, file string) {
				c.File = file
				c.Etcd.Endpoints = []string{"127.0.0.1:2379"}
				c.API.Port = 1400
				c.Node.Name = "testhost-1400"
				c.Container.PoolMemoryMB = 2048
				c.Cloud = Cloud{Enabled: true, ServerURL: "http://127.0.0.1:1326"}
				c.Registry.Area = "ROME"
				c.Scheduler.Policy = PolicyEdgeCloud
				c.Container.Expiration = time.Minute
				c.API.MaxBodyBytes = 1 << 20
			},
		},
		{
			name: "file with nested maps, lists and upper-case keys",
			file: `
etcd:
  address: [127.0.0.1:2379, "http://127.0.0.2:2379"]
Container:
  pool: {memory: 1024, cpus: 1.5}
  stemcells: {python3: 2, nodejs: 1}
cloud:
  server.url: http://127.0.0.1:1326
log: {level: DEBUG}
scheduler:
  reserved:
    performance: 0.5
`,
			edit: func(c *Config, file string) {
				c.File = file
				c.Etcd.Endpoints = []string{"127.0.0.1:2379", "http://127.0.0.2:2379"}
				c.Container.PoolMemoryMB = 1024
				c.Container.PoolCPUs = 1.5
				c.Container.Stemcells = map[string]int{"python": 2, "nodejs": 1}
				c.Cloud.ServerURL = "http://127.0.0.1:1326"
				c.Log.Level = slog.LevelDebug
				c.Scheduler.ReservedPerformance = 0.5
			},
		},
		{
			name: "empty file",
			file: "# nothing configured\n",
			edit: func(c *Config, file string) { c.File = file },
		},
		{
			name: "environment overrides the file",
			file: "api.port: 1400\ncloud: false\n",
			env: map[string]string{
				"SERVERLEDGE_API_PORT":                   "1500",
				"SERVERLEDGE_CLOUD":                      "true",
				"SERVERLEDGE_ETCD_EMBEDDED_CLIENT_PORT":  "3379",
				"SERVERLEDGE_CONTAINER_STEMCELLS":        "",
				"SERVERLEDGE_SCHEDULER_QUEUE_MAXWAIT":    "2.5",
				"SERVERLEDGE_CONTAINER_POOL_MEMORY_FOO":  "not a key, ignored",
				"SERVERLEDGE_SCHEDULER_RESERVED_PERFORM": "not a key either",
			},
			edit: func(c *Config, file string) {
				c.File = file
				c.API.Port = 1500
				c.Node.Name = "testhost-1500"
				c.Cloud.Enabled = true
				c.Etcd.Embedded.ClientPort = 3379
				c.Container.Stemcells = map[string]int{}
				c.Scheduler.QueueMaxWait = 2500 * time.Millisecond
			},
		},
		{
			name: "flags override environment and file",
			file: "api.port: 1400\nmetrics.enabled: true\n",
			args: []string{"--api.port", "1600", "--cloud", "--metrics.enabled=false", "--container.stemcells=nodejs:2", "--node.name=edge-7"},
			env:  map[string]string{"SERVERLEDGE_API_PORT": "1500", "SERVERLEDGE_NODE_NAME": "from-env"},
			edit: func(c *Config, file string) {
				c.File = file
				c.API.Port = 1600
				c.Node.Name = "edge-7"
				c.Cloud.Enabled = true
				c.Container.Stemcells = map[string]int{"nodejs": 2}
			},
		},
		{
			name: "last flag wins",
			args: []string{"--log.level=error", "--log.level=warn"},
			edit: func(c *Config, _ string) { c.Log.Level = slog.LevelWarn },
		},
		{
			name: "IPv6 API address",
			args: []string{"--api.ip=::1"},
			edit: func(c *Config, _ string) { c.API.IP = "::1" },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, home := newTestLoader(t, tc.env)
			args := tc.args
			var file string
			if tc.file != "" {
				file = writeFile(t, t.TempDir(), "conf.yaml", tc.file)
				args = append([]string{"--config", file}, args...)
			}
			cfg, err := l.load(args)
			if err != nil {
				t.Fatalf("load: %v", err)
			}
			want := defaultConfig(home)
			tc.edit(&want, file)
			if filepath.Base(want.Async.SpoolDir) == "testhost-1323" {
				// The default spool directory follows the node's name.
				want.Async.SpoolDir = filepath.Join(filepath.Dir(want.Async.SpoolDir), want.Node.Name)
			}
			if !reflect.DeepEqual(*cfg, want) {
				t.Errorf("config:\n got %+v\nwant %+v", *cfg, want)
			}
		})
	}
}

func TestAPIURL(t *testing.T) {
	tests := []struct {
		ip   string
		port int
		want string
	}{
		{"127.0.0.1", 1323, "http://127.0.0.1:1323"},
		{"::1", 8080, "http://[::1]:8080"},
	}
	for _, tc := range tests {
		c := Config{API: API{IP: tc.ip, Port: tc.port}}
		if got := c.APIURL(); got != tc.want {
			t.Errorf("APIURL() for %s:%d = %q, want %q", tc.ip, tc.port, got, tc.want)
		}
	}
}

// TestErrors checks that every bad input is reported with the key first and
// wraps the right sentinel.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		args []string
		env  map[string]string
		kind error
		// want are substrings of the error, each expected at the start of a line.
		want []string
	}{
		{
			name: "unknown key in file",
			file: "api.prot: 1400\n",
			kind: ErrUnknownKey,
			want: []string{`api.prot: unknown key (did you mean "api.port"?)`},
		},
		{
			name: "unknown nested key in file",
			file: "etcd:\n  adress: 127.0.0.1:2379\n",
			kind: ErrUnknownKey,
			want: []string{`etcd.adress: unknown key (did you mean "etcd.address"?)`},
		},
		{
			name: "prefix used as a key",
			file: "container.pool: 5\n",
			kind: ErrUnknownKey,
			want: []string{"container.pool: unknown key; it only prefixes the keys container.pool.memory, container.pool.cpus"},
		},
		{
			name: "unknown flag",
			args: []string{"--api.prot=1400"},
			kind: ErrUnknownKey,
			want: []string{`api.prot: unknown key (did you mean "api.port"?) (flag --api.prot)`},
		},
		{
			name: "flag with one dash",
			args: []string{"-api.port=1400"},
			kind: ErrUnknownKey,
			want: []string{"api.port: flags take two dashes (--api.port)"},
		},
		{
			name: "flag without a value",
			args: []string{"--api.port"},
			kind: ErrInvalidValue,
			want: []string{"api.port: no value given"},
		},
		{
			name: "wrong type in file",
			file: "api.port: abc\ncloud: maybe\ncontainer.pool.cpus: many\n",
			kind: ErrInvalidValue,
			want: []string{
				`api.port: expected an integer, got "abc" (file `,
				`cloud: expected true or false, got "maybe"`,
				`container.pool.cpus: expected a number, got "many"`,
			},
		},
		{
			name: "list for a scalar key",
			file: "container.pool.memory: [1, 2]\n",
			kind: ErrInvalidValue,
			want: []string{"container.pool.memory: expected a value of type int, got a list"},
		},
		{
			name: "wrong type in environment",
			env:  map[string]string{"SERVERLEDGE_CONTAINER_EXPIRATION": "soon"},
			kind: ErrInvalidValue,
			want: []string{`container.expiration: expected a duration in seconds or with a unit (e.g. 30 or 1m30s), got "soon" (env SERVERLEDGE_CONTAINER_EXPIRATION)`},
		},
		{
			name: "bad policy",
			env:  map[string]string{"SERVERLEDGE_SCHEDULER_POLICY": "fastest"},
			kind: ErrInvalidValue,
			want: []string{`scheduler.policy: unknown policy "fastest" (known: localonly, edgeonly, cloudonly, edgecloud, default)`},
		},
		{
			name: "bad port",
			args: []string{"--api.port=70000"},
			kind: ErrInvalidValue,
			want: []string{"api.port: must be a port between 1 and 65535, got 70000 (flag --api.port)"},
		},
		{
			name: "API port taken by the embedded etcd",
			args: []string{"--api.port=2379"},
			kind: ErrInvalidValue,
			want: []string{"api.port: 2379 is also a port of the embedded etcd"},
		},
		{
			name: "unspecified API address",
			args: []string{"--api.ip=0.0.0.0"},
			kind: ErrInvalidValue,
			want: []string{"api.ip: 0.0.0.0 cannot be advertised"},
		},
		{
			name: "bad cloud URL",
			args: []string{"--cloud.server.url=ftp://lb:21"},
			kind: ErrInvalidValue,
			want: []string{`cloud.server.url: expected an http:// or https:// URL, got "ftp://lb:21"`},
		},
		{
			name: "bad etcd endpoint",
			file: "etcd.address: 127.0.0.1:2379,localhost\n",
			kind: ErrInvalidValue,
			want: []string{`etcd.address: endpoint "localhost": expected host:port`},
		},
		{
			name: "stemcells syntax",
			args: []string{"--container.stemcells=python2"},
			kind: ErrInvalidValue,
			want: []string{`container.stemcells: expected runtime:count pairs separated by commas (e.g. python:2,nodejs:1), got "python2"`},
		},
		{
			name: "stemcells for custom runtime",
			args: []string{"--container.stemcells=custom:1"},
			kind: ErrInvalidValue,
			want: []string{`container.stemcells: runtime "custom" has no built-in image`},
		},
		{
			name: "stemcells alias given twice",
			args: []string{"--container.stemcells=python:1,python310:1"},
			kind: ErrInvalidValue,
			want: []string{`container.stemcells: runtime "python" is given twice`},
		},
		{
			name: "stemcells larger than the pool",
			args: []string{"--container.pool.memory=256", "--container.stemcells=python:3"},
			kind: ErrInvalidValue,
			want: []string{"container.stemcells: 3 stem cells of 128 MB (container.stemcell.memory) exceed container.pool.memory (256 MB)"},
		},
		{
			name: "tmp size not whole MiB",
			args: []string{"--container.tmp.size=1500KiB"},
			kind: ErrInvalidValue,
			want: []string{"container.tmp.size: must be a whole number of MiB from 1MiB to 16GiB, got 1536000 bytes"},
		},
		{
			name: "tmp size zero",
			args: []string{"--container.tmp.size=0"},
			kind: ErrInvalidValue,
			want: []string{"container.tmp.size: must be a whole number of MiB"},
		},
		{
			name: "negative code cache",
			args: []string{"--registry.code.cache.mb=-1"},
			kind: ErrInvalidValue,
			want: []string{"registry.code.cache.mb: must be between 0 and 1048576, got -1"},
		},
		{
			name: "bad log level",
			env:  map[string]string{"SERVERLEDGE_LOG_LEVEL": "verbose"},
			kind: ErrInvalidValue,
			want: []string{`log.level: unknown level "verbose"`},
		},
		{
			name: "non-positive values",
			file: "container.pool.memory: 0\ncontainer.expiration: -5\nregistry.ttl: 1.5\nscheduler.reserved.performance: 1\nscheduler.queue.capacity: -1\n",
			kind: ErrInvalidValue,
			want: []string{
				"container.pool.memory: must be positive, got 0 (file ",
				"container.expiration: must be a positive duration, got -5s",
				"registry.ttl: must be a whole number of seconds, at least 1, got 1.5s",
				"scheduler.reserved.performance: must be at least 0 and below 1, got 1",
				"scheduler.queue.capacity: must be 0 (no queue) or more, got -1",
			},
		},
		{
			name: "every bad key is reported at once",
			file: "api.prot: 1\napi.port: abc\nscheduler.policy: best\n",
			env:  map[string]string{"SERVERLEDGE_METRICS_PATH": "metrics"},
			kind: ErrInvalidValue,
			want: []string{
				"api.prot: unknown key",
				`api.port: expected an integer, got "abc"`,
				`scheduler.policy: unknown policy "best"`,
				`metrics.path: must start with '/', got "metrics" (env SERVERLEDGE_METRICS_PATH)`,
			},
		},
		{
			name: "key that is both a value and a nested mapping",
			file: "cloud: true\ncloud:\n  server:\n    url: http://127.0.0.1:1326\n",
			kind: ErrConfigFile,
			want: []string{`cloud: has a value (line 1) and is also a nested mapping (line 2); a key that is both a value and a prefix must be written with flat dotted keys, e.g. "cloud: ..." and "cloud.server.url: ..."`},
		},
		{
			name: "key given twice",
			file: "api.port: 1400\napi:\n  port: 1500\n",
			kind: ErrConfigFile,
			want: []string{"api.port: given twice in the file (lines 1 and 3)"},
		},
		{
			name: "file is not YAML",
			file: "api.port: [1400\n",
			kind: ErrConfigFile,
			want: []string{"is not valid YAML"},
		},
		{
			name: "file is not a mapping",
			file: "- api.port\n",
			kind: ErrConfigFile,
			want: []string{"config: ", "the top level must be a mapping of keys to values"},
		},
		{
			name: "two configuration files",
			args: []string{"a.yaml", "b.yaml"},
			kind: ErrConfigFile,
			want: []string{"config: only one configuration file may be given"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newTestLoader(t, tc.env)
			args := tc.args
			if tc.file != "" {
				args = append([]string{writeFile(t, t.TempDir(), "conf.yaml", tc.file)}, args...)
			}
			cfg, err := l.load(args)
			if err == nil {
				t.Fatalf("load succeeded with %+v, want an error", cfg)
			}
			if !errors.Is(err, tc.kind) {
				t.Errorf("error %q does not wrap %v", err, tc.kind)
			}
			lines := strings.Split(err.Error(), "\n")
			for _, w := range tc.want {
				found := false
				for _, line := range lines {
					if strings.HasPrefix(line, w) || (strings.HasPrefix(line, "config: ") && strings.Contains(line, w)) {
						found = true
					}
				}
				if !found {
					t.Errorf("error does not have a line starting with %q:\n%v", w, err)
				}
			}
			var ke *KeyError
			if !errors.As(err, &ke) {
				t.Errorf("error %q is not a *KeyError", err)
			}
		})
	}
}

func TestMissingExplicitFile(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	for _, args := range [][]string{{"--config", missing}, {missing}} {
		_, err := Load(args, testEnv(map[string]string{"HOME": t.TempDir()}))
		if !errors.Is(err, ErrConfigFile) || !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Load(%q) error = %v, want ErrConfigFile and fs.ErrNotExist", args, err)
		}
		if !strings.HasPrefix(err.Error(), "config: ") || !strings.Contains(err.Error(), missing) {
			t.Errorf("error %q should start with the key and name the file", err)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h"} {
		if _, err := Load([]string{arg}, testEnv(nil)); !errors.Is(err, ErrHelp) {
			t.Errorf("Load(%s) error = %v, want ErrHelp", arg, err)
		}
	}
	usage := Usage()
	for i := range keys {
		if !strings.Contains(usage, "--"+keys[i].name+" ") || !strings.Contains(usage, envName(keys[i].name)) {
			t.Errorf("usage does not list %s with its variable", keys[i].name)
		}
	}
}

// TestFileSearch checks that the first directory holding FileName wins and
// that an explicit file skips the search.
func TestFileSearch(t *testing.T) {
	first, second, empty := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, second, FileName, "api.port: 1402\n")
	explicit := writeFile(t, t.TempDir(), "other.yaml", "api.port: 1403\n")

	tests := []struct {
		name string
		dirs []string
		args []string
		want int
	}{
		{"nothing found", []string{empty}, nil, 1323},
		{"second directory", []string{empty, second}, nil, 1402},
		{"first directory wins", []string{first, second}, nil, 1401},
		{"explicit file skips the search", []string{first, second}, []string{explicit}, 1403},
	}
	writeFile(t, first, FileName, "api.port: 1401\n")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newTestLoader(t, nil, tc.dirs...)
			cfg, err := l.load(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.API.Port != tc.want {
				t.Errorf("api.port = %d, want %d (file %q)", cfg.API.Port, tc.want, cfg.File)
			}
		})
	}
}

func TestSearchDirs(t *testing.T) {
	got := defaultSearchDirs(testEnv(map[string]string{"HOME": "/home/u"}))
	want := []string{"/etc/serverledge", "/home/u", "."}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("search dirs = %q, want %q", got, want)
	}
}

func TestEmbeddedDir(t *testing.T) {
	base := t.TempDir()
	notADir := writeFile(t, base, "file", "x")
	uid := strconv.Itoa(os.Getuid())
	tests := []struct {
		name string
		env  map[string]string
		args []string
		// want is relative to base, or to the loader's tmpDir when it starts with "tmp:".
		want    string
		created bool
	}{
		{"XDG_DATA_HOME", map[string]string{"XDG_DATA_HOME": filepath.Join(base, "xdg")}, nil, "xdg/serverledge/etcd", true},
		{"HOME when XDG_DATA_HOME is relative", map[string]string{"XDG_DATA_HOME": "rel", "HOME": filepath.Join(base, "h")}, nil, "h/.local/share/serverledge/etcd", true},
		{"fallback when not writable", map[string]string{"XDG_DATA_HOME": notADir}, nil, "tmp:serverledge-etcd-" + uid, false},
		{"external etcd does not touch the disk", map[string]string{"XDG_DATA_HOME": filepath.Join(base, "ext")}, []string{"--etcd.address=127.0.0.1:2379"}, "ext/serverledge/etcd", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := newTestLoader(t, tc.env)
			cfg, err := l.load(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			want := filepath.Join(base, tc.want)
			if rest, ok := strings.CutPrefix(tc.want, "tmp:"); ok {
				want = filepath.Join(l.tmpDir, rest)
			}
			if cfg.Etcd.Embedded.Dir != want {
				t.Errorf("etcd.embedded.dir = %q, want %q", cfg.Etcd.Embedded.Dir, want)
			}
			_, statErr := os.Stat(want)
			if created := statErr == nil; created != tc.created {
				t.Errorf("%s created = %v, want %v", want, created, tc.created)
			}
		})
	}
}

func TestDefaultNodeName(t *testing.T) {
	tests := []struct {
		host string
		want string
	}{
		{"edge1", "edge1-1323"},
		{"my host/with:odd", "my-host-with-odd-1323"},
		{"-dash", "node-dash-1323"},
		{"", "node-1323"},
		{strings.Repeat("h", 300), strings.Repeat("h", maxHostPart) + "-1323"},
	}
	for _, tc := range tests {
		l, _ := newTestLoader(t, nil)
		l.hostname = func() (string, error) { return tc.host, nil }
		cfg, err := l.load(nil)
		if err != nil {
			t.Fatalf("host %q: %v", tc.host, err)
		}
		if cfg.Node.Name != tc.want {
			t.Errorf("host %q: node.name = %q, want %q", tc.host, cfg.Node.Name, tc.want)
		}
	}
}

func TestEnvNamesUnique(t *testing.T) {
	seen := map[string]string{}
	for i := range keys {
		n := envName(keys[i].name)
		if prev, ok := seen[n]; ok {
			t.Errorf("%s and %s share the variable %s", prev, keys[i].name, n)
		}
		seen[n] = keys[i].name
	}
	if got := envName("etcd.embedded.client_port"); got != "SERVERLEDGE_ETCD_EMBEDDED_CLIENT_PORT" {
		t.Errorf("envName = %q", got)
	}
}

func TestSuggest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"api.prot", "api.port"},
		{"pool.memory", "container.pool.memory"},
		{"api_port", "api.port"},
		{"scheduler.polcy", "scheduler.policy"},
		{"something.else.entirely", ""},
	}
	for _, tc := range tests {
		if got := suggest(tc.in); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
