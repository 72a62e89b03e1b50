package executor

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
)

// memoryLimit returns the container's memory limit in bytes, or 0 if none
// can be read (cgroup v2 first, then v1).
func memoryLimit() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
		if err != nil || n <= 0 || n >= 1<<62 {
			return 0 // "max", or v1's "unlimited" page-rounded maximum
		}
		return n
	}
	return 0
}

// oomKills returns the cgroup's count of out-of-memory kills, or 0 if unknown.
func oomKills() int64 {
	for _, p := range []string{"/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"} {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		n := int64(0)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("oom_kill ")); ok {
				n, _ = strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			}
		}
		_ = f.Close()
		return n
	}
	return 0
}
