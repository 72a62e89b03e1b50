// Command worker is a tiny custom-runtime worker for the Serverledge
// executor (docs/executor.md, "Custom images"). The executor starts it once
// per container and talks to it with one JSON object per line: requests on
// fd 3, replies on fd 4. Its "function" greets Params["name"].
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

// request is one line read from fd 3.
type request struct {
	Op           string            `json:"op"`
	Dir          string            `json:"Dir"`
	Handler      string            `json:"Handler"`
	Env          map[string]string `json:"Env"`
	Params       map[string]any    `json:"Params"`
	Context      map[string]any    `json:"Context"`
	ReturnOutput bool              `json:"ReturnOutput"`
}

// reply is one line written to fd 4; it is the executor's InvokeResponse.
type reply struct {
	Success  bool    `json:"Success"`
	Result   string  `json:"Result"`
	Output   string  `json:"Output,omitempty"`
	Error    string  `json:"Error,omitempty"`
	Duration float64 `json:"Duration"`
}

func main() {
	// Let the OOM killer pick this process rather than the executor.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
	if err := serve(os.NewFile(3, "requests"), os.NewFile(4, "replies")); err != nil {
		slog.Error("worker stopped", "err", err)
		os.Exit(1)
	}
}

func serve(requests io.Reader, replies io.Writer) error {
	in := bufio.NewReaderSize(requests, 64<<10)
	out := bufio.NewWriter(replies)
	enc := json.NewEncoder(out) // Encode ends every reply with a newline
	for {
		line, err := in.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return nil // the executor went away
		}
		if err != nil {
			return err
		}
		var req request
		var rep reply
		if err := json.Unmarshal(line, &req); err != nil {
			rep.Error = "bad request: " + err.Error()
		} else {
			rep = handle(req)
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
}

func handle(req request) reply {
	switch req.Op {
	case "load":
		// The function's environment is set before its code is loaded.
		for k, v := range req.Env {
			if err := os.Setenv(k, v); err != nil {
				return reply{Error: fmt.Sprintf("setting %s: %v", k, err)}
			}
		}
		// A real runtime would read its code from req.Dir here.
		return reply{Success: true}
	case "invoke":
		start := time.Now()
		name, _ := req.Params["name"].(string)
		if name == "" {
			return reply{Error: "ValueError: missing parameter name", Duration: time.Since(start).Seconds()}
		}
		result, err := json.Marshal(map[string]string{"greeting": "Hello, " + strings.ToUpper(name) + "!"})
		if err != nil {
			return reply{Error: err.Error()}
		}
		rep := reply{Success: true, Result: string(result), Duration: time.Since(start).Seconds()}
		if req.ReturnOutput {
			rep.Output = fmt.Sprintf("greeted %s\n", name)
		}
		return rep
	default:
		return reply{Error: fmt.Sprintf("unknown op %q", req.Op)}
	}
}
