package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/serverledge/serverledge/internal/function"
)

// The setters below turn a raw string into a typed field. Their errors say
// what was expected and what was given; the caller prefixes the key name.

func setString(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, raw string) error {
		*field(c) = strings.TrimSpace(raw)
		return nil
	}
}

func setList(field func(*Config) *[]string) func(*Config, string) error {
	return func(c *Config, raw string) error {
		var out []string
		for _, part := range strings.Split(raw, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
		*field(c) = out
		return nil
	}
}

func setInt(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, raw string) error {
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			return fmt.Errorf("expected an integer, got %q", raw)
		}
		*field(c) = n
		return nil
	}
}

func setInt64(field func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, raw string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(raw), 10, 64)
		if err != nil {
			return fmt.Errorf("expected an integer, got %q", raw)
		}
		*field(c) = n
		return nil
	}
}

func setFloat(field func(*Config) *float64) func(*Config, string) error {
	return func(c *Config, raw string) error {
		f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("expected a number, got %q", raw)
		}
		*field(c) = f
		return nil
	}
}

func setBool(field func(*Config) *bool) func(*Config, string) error {
	return func(c *Config, raw string) error {
		switch strings.ToLower(strings.TrimSpace(raw)) {
		case "true", "t", "1", "yes", "y", "on":
			*field(c) = true
		case "false", "f", "0", "no", "n", "off":
			*field(c) = false
		default:
			return fmt.Errorf("expected true or false, got %q", raw)
		}
		return nil
	}
}

// maxSeconds bounds a duration given in seconds (about 31 years).
const maxSeconds = 1e9

// parseDuration accepts a number of seconds ("30", "0.5") or a Go duration
// with a unit ("1m30s", "500ms").
func parseDuration(raw string) (time.Duration, error) {
	s := strings.TrimSpace(raw)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > maxSeconds {
			return 0, fmt.Errorf("expected a duration in seconds or with a unit (e.g. 30 or 1m30s), got %q", raw)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("expected a duration in seconds or with a unit (e.g. 30 or 1m30s), got %q", raw)
	}
	return d, nil
}

func setDuration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, raw string) error {
		d, err := parseDuration(raw)
		if err != nil {
			return err
		}
		*field(c) = d
		return nil
	}
}

// byteUnits are the suffixes accepted by setBytes, longest first.
var byteUnits = []struct {
	suffix string
	factor int64
}{
	{"GiB", 1 << 30},
	{"MiB", 1 << 20},
	{"KiB", 1 << 10},
	{"B", 1},
}

// setBytes accepts a number of bytes, optionally with a KiB, MiB or GiB suffix.
func setBytes(field func(*Config) *int64) func(*Config, string) error {
	return func(c *Config, raw string) error {
		s := strings.TrimSpace(raw)
		factor := int64(1)
		for _, u := range byteUnits {
			if strings.HasSuffix(s, u.suffix) {
				s, factor = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.factor
				break
			}
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n > math.MaxInt64/factor || n < math.MinInt64/factor {
			return fmt.Errorf("expected a number of bytes, optionally with a KiB, MiB or GiB suffix, got %q", raw)
		}
		*field(c) = n * factor
		return nil
	}
}

// setStemcells parses "runtime:count,runtime:count". Runtime aliases are
// resolved to canonical names; "custom" has no image and is refused.
func setStemcells(c *Config, raw string) error {
	out := map[string]int{}
	for _, pair := range strings.Split(raw, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		name, count, ok := strings.Cut(pair, ":")
		if !ok {
			return fmt.Errorf("expected runtime:count pairs separated by commas (e.g. python:2,nodejs:1), got %q", pair)
		}
		name = strings.TrimSpace(name)
		n, err := strconv.Atoi(strings.TrimSpace(count))
		if err != nil || n < 0 {
			return fmt.Errorf("count for %q must be a non-negative integer, got %q", name, strings.TrimSpace(count))
		}
		rt, err := function.LookupRuntime(name)
		if err != nil {
			if errors.Is(err, function.ErrUnknownRuntime) {
				return fmt.Errorf("unknown runtime %q (known: %s)", name, builtinRuntimeNames())
			}
			return fmt.Errorf("runtime %q: %v", name, err)
		}
		if rt.Image == "" {
			return fmt.Errorf("runtime %q has no built-in image and cannot have stem cells", name)
		}
		if _, dup := out[rt.Name]; dup {
			return fmt.Errorf("runtime %q is given twice", rt.Name)
		}
		out[rt.Name] = n
	}
	c.Container.Stemcells = out
	return nil
}

func builtinRuntimeNames() string {
	var names []string
	for _, rt := range function.BuiltinRuntimes() {
		names = append(names, rt.Name)
	}
	return strings.Join(names, ", ")
}

func setPolicy(c *Config, raw string) error {
	p := Policy(strings.ToLower(strings.TrimSpace(raw)))
	if !slices.Contains(Policies(), p) {
		return fmt.Errorf("unknown policy %q (known: localonly, edgeonly, cloudonly, edgecloud, default)", raw)
	}
	c.Scheduler.Policy = p
	return nil
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

func setLogLevel(c *Config, raw string) error {
	lvl, ok := logLevels[strings.ToLower(strings.TrimSpace(raw))]
	if !ok {
		return fmt.Errorf("unknown level %q (known: debug, info, warn, error)", raw)
	}
	c.Log.Level = lvl
	return nil
}
