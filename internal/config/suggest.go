package config

import (
	"fmt"
	"strings"
)

// unknownKeyMsg explains an unknown key: the keys under it when it is a
// prefix of known keys, else the closest known key when there is one.
func unknownKeyMsg(name string) string {
	var under []string
	for i := range keys {
		if strings.HasPrefix(keys[i].name, name+".") {
			under = append(under, keys[i].name)
		}
	}
	if len(under) > 0 {
		return fmt.Sprintf("unknown key; it only prefixes the keys %s", strings.Join(under, ", "))
	}
	if s := suggest(name); s != "" {
		return fmt.Sprintf("unknown key (did you mean %q?)", s)
	}
	return "unknown key (run with --help to list the keys)"
}

// suggest returns the known key closest to name, or "" when none is close.
func suggest(name string) string {
	best, bestDist := "", -1
	for i := range keys {
		k := keys[i].name
		if strings.HasSuffix(k, "."+name) {
			return k
		}
		d := editDistance(name, k)
		if bestDist < 0 || d < bestDist {
			best, bestDist = k, d
		}
	}
	limit := max(2, len(name)/4)
	if bestDist > limit {
		return ""
	}
	return best
}

// editDistance is the optimal-string-alignment distance between a and b:
// insertions, deletions, substitutions and swaps of adjacent bytes.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
