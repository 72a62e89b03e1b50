package bench

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serverledge/serverledge/internal/codearchive"
)

// archiveResults collects bench/results/archive.txt.
var archiveResults = newResultsFile("results/archive.txt", func() string {
	return "# code archive checks — go test -run '^$' -bench Archive -benchtime 5x ./bench/\n" +
		"# wall and process CPU time of codearchive.Check per archive on this machine (shared cores: CPU is the steadier figure); nothing is asserted\n"
})

// processCPU returns the CPU time (user and system) of this process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// archiveCase is one archive of the check benchmark.
type archiveCase struct {
	name   string
	accept bool
	build  func(tw *tar.Writer) error
}

func gzipTar(b *testing.B, build func(tw *tar.Writer) error) []byte {
	b.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		b.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	if err := build(tw); err != nil {
		b.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkArchiveCheck times codearchive.Check on the hostile archives of
// issue 6 and on the costliest archives the limits still accept.
func BenchmarkArchiveCheck(b *testing.B) {
	cases := []archiveCase{
		{"typical: 200 files in 20 directories", true, func(tw *tar.Writer) error {
			for i := range 200 {
				body := strings.Repeat("x = 1\n", 100)
				if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("pkg%d/mod%d.py", i%20, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}); err != nil {
					return err
				}
				if _, err := tw.Write([]byte(body)); err != nil {
					return err
				}
			}
			return nil
		}},
		{"issue 6 bomb: one 256 KiB path a/a/a/...", false, func(tw *tar.Writer) error {
			return tw.WriteHeader(&tar.Header{Name: strings.Repeat("a/", 128<<10) + "f", Typeflag: tar.TypeReg, Mode: 0o644, Format: tar.FormatPAX})
		}},
		{"name bomb: 1000 entries of 500 KiB names", false, func(tw *tar.Writer) error {
			for i := range 1000 {
				if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%s%d", strings.Repeat("n", 500<<10), i), Typeflag: tar.TypeSymlink, Linkname: "x", Format: tar.FormatPAX}); err != nil {
					return err
				}
			}
			return nil
		}},
		{"limit: 20000 paths 128 levels deep", true, func(tw *tar.Writer) error {
			prefix := strings.Repeat("d/", codearchive.MaxDepth-2)
			for i := range codearchive.MaxEntries - codearchive.MaxDepth {
				if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("%s%d", prefix, i), Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
					return err
				}
			}
			return nil
		}},
		{"limit: 8 MiB of link targets, 2000 links", true, func(tw *tar.Writer) error {
			if err := tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644}); err != nil {
				return err
			}
			target := strings.Repeat("x/../", 800)
			for i := range 2000 {
				if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d", i), Typeflag: tar.TypeSymlink, Linkname: target + "f", Format: tar.FormatPAX}); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	var lines []string
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			archive := gzipTar(b, c.build)
			ctx := context.Background()
			start, cpu0 := time.Now(), processCPU(b)
			for b.Loop() {
				err := codearchive.Check(ctx, archive)
				if (err == nil) != c.accept {
					b.Fatalf("Check: %v, want accepted=%v", err, c.accept)
				}
			}
			per := time.Since(start) / time.Duration(b.N)
			cpu := (processCPU(b) - cpu0) / time.Duration(b.N)
			lines = append(lines, fmt.Sprintf("%-45s %8d bytes compressed  %10v wall  %10v CPU per Check", c.name, len(archive), per.Round(time.Microsecond), cpu.Round(time.Microsecond)))
		})
	}
	archiveResults.setLines(b, "BenchmarkArchiveCheck", lines...)
}
