// Command floorproxy is the floor of the node's HTTP hop in the benchmarks
// of bench/ (BenchmarkFloor): a bare net/http/httputil reverse proxy that
// forwards POST /invoke/<name> to POST /invoke of one executor over its unix
// socket, with nothing in between (no lookup, no scheduling, no pool, no
// JSON work). It runs as its own process so that its CPU counters are its
// own, and exits on SIGTERM or SIGINT.
//
//	floorproxy -listen 127.0.0.1:8080 -socket /path/to/executor.sock [-maxconns 1] [-cpuprofile file]
//
// -maxconns bounds the connections to the executor (0: unbounded, one per
// concurrent request); 1 holds a single connection, as the node does.
// -cpuprofile writes a CPU profile of the whole run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	socket := flag.String("socket", "", "the executor's unix socket")
	maxConns := flag.Int("maxconns", 0, "most connections to the executor; 0 means unbounded")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "floorproxy:", err)
			os.Exit(1)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	if err := run(*listen, *socket, *maxConns); err != nil {
		fmt.Fprintln(os.Stderr, "floorproxy:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func run(listen, socket string, maxConns int) error {
	if socket == "" {
		return errors.New("-socket is required")
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:          128,
		MaxIdleConnsPerHost:   128,
		MaxConnsPerHost:       maxConns,
		IdleConnTimeout:       time.Minute,
		ResponseHeaderTimeout: time.Minute,
		DisableCompression:    true,
	}
	target := &url.URL{Scheme: "http", Host: "executor"}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.URL.Path = "/invoke"
			r.Out.URL.RawPath = ""
		},
		Transport: transport,
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           proxy,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      2 * time.Minute,
		IdleTimeout:       5 * time.Minute,
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		slog.Warn("shutdown", "err", err)
	}
	return nil
}
