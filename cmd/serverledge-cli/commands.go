package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/serverledge/serverledge/internal/client"
	"github.com/serverledge/serverledge/internal/function"
	"github.com/serverledge/serverledge/internal/wire"
)

// Defaults and environment variables for choosing the node.
const (
	defaultHost = "localhost"
	defaultPort = 1323
	envHost     = "SERVERLEDGE_HOST"
	envPort     = "SERVERLEDGE_PORT"
)

// pollInterval is how often poll --wait asks the node again.
const pollInterval = 250 * time.Millisecond

// cli holds what every command shares: the output streams, the environment
// and the node address flags.
type cli struct {
	stdout io.Writer
	getenv func(string) string
	host   string
	port   int

	// terminal is true when stdout is a terminal: --output defaults to table.
	terminal bool
}

// newRootCmd builds the command tree.
func newRootCmd(stdout, stderr io.Writer, getenv func(string) string) *cobra.Command {
	c := &cli{stdout: stdout, getenv: getenv, terminal: isTerminal(stdout)}
	root := &cobra.Command{
		Use:   "serverledge-cli",
		Short: "Command-line client of a Serverledge node",
		Long: "serverledge-cli talks to a Serverledge node over its HTTP API.\n" +
			"The node is chosen with -H/--host and -P/--port, or with the environment\n" +
			"variables " + envHost + " and " + envPort + "; flags win over the environment.",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVarP(&c.host, "host", "H", defaultHost, "node host name or address (env "+envHost+")")
	root.PersistentFlags().IntVarP(&c.port, "port", "P", defaultPort, "node HTTP port (env "+envPort+")")
	root.AddCommand(
		c.createCmd(),
		c.updateCmd(),
		c.deleteCmd(),
		c.listCmd(),
		c.describeCmd(),
		c.invokeCmd(),
		c.pollCmd(),
		c.statusCmd(),
		c.prewarmCmd(),
	)
	return root
}

// client returns a client of the node chosen by the flags or, for a flag
// left unset, by the environment.
func (c *cli) client(cmd *cobra.Command) (*client.Client, error) {
	host := c.host
	if !cmd.Flags().Changed("host") {
		if v := strings.TrimSpace(c.getenv(envHost)); v != "" {
			host = v
		}
	}
	port := strconv.Itoa(c.port)
	if !cmd.Flags().Changed("port") {
		if v := strings.TrimSpace(c.getenv(envPort)); v != "" {
			port = v
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("invalid port %q: want a number between 1 and 65535", port)
	}
	scheme := "http"
	if s, rest, ok := strings.Cut(host, "://"); ok {
		scheme, host = s, rest
	}
	host = strings.TrimSuffix(host, "/")
	if host == "" {
		return nil, errors.New("empty host")
	}
	return client.New(scheme + "://" + net.JoinHostPort(strings.Trim(host, "[]"), port))
}

// printJSON writes v indented, without HTML escaping.
func (c *cli) printJSON(v any) error {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// callAndPrint calls the node chosen by the flags with call and prints its
// answer as JSON, or as cmd's --output asks.
func (c *cli) callAndPrint(cmd *cobra.Command, call func(context.Context, *client.Client) (any, error)) error {
	cl, err := c.client(cmd)
	if err != nil {
		return err
	}
	resp, err := call(cmd.Context(), cl)
	if err != nil {
		return err
	}
	return c.print(cmd, resp)
}

// nodeCmd completes cmd, which names no function, into a command that takes
// no arguments and prints as JSON what call answers.
func (c *cli) nodeCmd(cmd *cobra.Command, call func(context.Context, *client.Client) (any, error)) *cobra.Command {
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		return c.callAndPrint(cmd, call)
	}
	return cmd
}

// functionCmd completes cmd into a command that names one function, by
// -f/--function or by its argument, and prints as JSON what call answers
// for it.
func (c *cli) functionCmd(cmd *cobra.Command, call func(ctx context.Context, cl *client.Client, name string) (any, error)) *cobra.Command {
	var name string
	cmd.Args = cobra.MaximumNArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		fn, err := functionName(name, args)
		if err != nil {
			return err
		}
		return c.callAndPrint(cmd, func(ctx context.Context, cl *client.Client) (any, error) {
			return call(ctx, cl, fn)
		})
	}
	cmd.Flags().StringVarP(&name, "function", "f", "", "function name")
	return c.completeFunctionNames(cmd)
}

// functionName returns the function named by -f/--function or by the only
// positional argument.
func functionName(flagValue string, args []string) (string, error) {
	switch {
	case len(args) > 1:
		return "", fmt.Errorf("too many arguments %q: give one function name", args)
	case len(args) == 1 && flagValue != "" && args[0] != flagValue:
		return "", fmt.Errorf("function named twice: -f %s and argument %s", flagValue, args[0])
	case len(args) == 1:
		return args[0], nil
	case flagValue == "":
		return "", errors.New("missing function name: use -f/--function <name>")
	}
	return flagValue, nil
}

// definition holds the flags of create and update.
type definition struct {
	name        string
	runtime     string
	handler     string
	memory      int64
	cpu         float64
	src         string
	customImage string
	timeout     float64
	zones       []string
	env         []string
	concurrency int
	archs       []string
}

func (d *definition) addFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&d.name, "function", "f", "", "function name")
	fs.StringVar(&d.runtime, "runtime", "", "runtime: python, nodejs or custom (aliases such as python310 are accepted)")
	fs.StringVar(&d.handler, "handler", "", "handler: module.function for python, file.js for nodejs")
	fs.Int64Var(&d.memory, "memory", function.DefaultMemoryMB, "memory limit in MB")
	fs.Float64Var(&d.cpu, "cpu", 0, "CPU cap in cores (0: no cap)")
	fs.StringVar(&d.src, "src", "", "function code: a file, a directory, or a .tar/.tar.gz archive")
	fs.StringVar(&d.customImage, "custom_image", "", "Docker image of a custom runtime")
	fs.Float64Var(&d.timeout, "timeout", 0, "execution timeout in seconds (0: the node's default)")
	fs.StringArrayVar(&d.zones, "zone", nil, "zone or region where the function may run (repeatable; none: anywhere)")
	fs.StringArrayVar(&d.env, "env", nil, "environment variable NAME=value for the function (repeatable; on update the given set replaces the current one)")
	fs.IntVar(&d.concurrency, "max-concurrency", 0, "requests one container serves at once (0: the node's default, 1)")
	fs.StringArrayVar(&d.archs, "arch", nil, "architecture the function runs on, e.g. amd64 or arm64 (repeatable; none: any)")
}

// parseEnv turns repeated NAME=value flags into a map, checked with the
// node's rules so that a mistake fails before anything is sent.
func parseEnv(pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	env := make(map[string]string, len(pairs))
	for _, p := range pairs {
		name, value, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--env %q: want NAME=value", p)
		}
		if _, dup := env[name]; dup {
			return nil, fmt.Errorf("--env %s given twice", name)
		}
		env[name] = value
	}
	if err := function.ValidateEnv(env); err != nil {
		return nil, fmt.Errorf("--env: %w", err)
	}
	return env, nil
}

// code returns the base64 of the packed --src.
func (d *definition) code() (string, error) {
	archive, err := packSource(d.src)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(archive), nil
}

func (c *cli) createCmd() *cobra.Command {
	var d definition
	cmd := &cobra.Command{
		Use:   "create [-f] NAME --runtime RUNTIME --handler HANDLER --src PATH",
		Short: "Create a function",
		Example: "  serverledge-cli create -f hello --runtime python --handler hello.handler --src examples/python/hello\n" +
			"  serverledge-cli create -f myimg --runtime custom --custom_image me/myfn:latest",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := functionName(d.name, args)
			if err != nil {
				return err
			}
			env, err := parseEnv(d.env)
			if err != nil {
				return err
			}
			req := wire.FunctionRequest{
				Name:           name,
				Runtime:        d.runtime,
				MemoryMB:       d.memory,
				CPUDemand:      d.cpu,
				Handler:        d.handler,
				CustomImage:    d.customImage,
				AllowedZones:   d.zones,
				TimeoutSeconds: d.timeout,
				Env:            env,
				MaxConcurrency: d.concurrency,
				SupportedArchs: d.archs,
			}
			if d.src == "" && d.runtime != function.RuntimeCustom {
				return fmt.Errorf("--src is required for runtime %q", d.runtime)
			}
			if d.src != "" {
				if req.TarFunctionCode, err = d.code(); err != nil {
					return err
				}
			}
			return c.callAndPrint(cmd, func(ctx context.Context, cl *client.Client) (any, error) {
				return cl.Create(ctx, req)
			})
		},
	}
	d.addFlags(cmd.Flags())
	completeRuntimes(cmd)
	return cmd
}

func (c *cli) updateCmd() *cobra.Command {
	var d definition
	cmd := &cobra.Command{
		Use:   "update [-f] NAME [--src PATH] [--handler ...] [--memory ...]",
		Short: "Update a function; flags not given keep their current value",
		Long: "update replaces a function's definition. Flags that are not given keep the\n" +
			"function's current value, except the code: the node never returns code, so\n" +
			"--src is required unless the runtime is custom.",
		Example: "  serverledge-cli update -f hello --src examples/python/hello --memory 256",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := functionName(d.name, args)
			if err != nil {
				return err
			}
			if _, err := parseEnv(d.env); err != nil {
				return err
			}
			return c.callAndPrint(cmd, func(ctx context.Context, cl *client.Client) (any, error) {
				current, err := cl.Describe(ctx, name)
				if err != nil {
					return nil, err
				}
				req, err := d.merge(cmd.Flags(), wire.FunctionRequest{
					Name:           current.Name,
					Runtime:        current.Runtime,
					MemoryMB:       current.MemoryMB,
					CPUDemand:      current.CPUDemand,
					Handler:        current.Handler,
					CustomImage:    current.CustomImage,
					AllowedZones:   current.AllowedZones,
					TimeoutSeconds: current.TimeoutSeconds,
					MaxConcurrency: current.MaxConcurrency,
					SupportedArchs: current.SupportedArchs,
					Signature:      current.Signature,
					Env:            current.Env,
				})
				if err != nil {
					return nil, err
				}
				req.Name = name
				return cl.Update(ctx, req)
			})
		},
	}
	d.addFlags(cmd.Flags())
	completeRuntimes(cmd)
	return c.completeFunctionNames(cmd)
}

// merge overrides the fields of current whose flags were given.
func (d *definition) merge(fs *pflag.FlagSet, current wire.FunctionRequest) (wire.FunctionRequest, error) {
	req := current
	if fs.Changed("runtime") {
		req.Runtime = d.runtime
	}
	if fs.Changed("handler") {
		req.Handler = d.handler
	}
	if fs.Changed("memory") {
		req.MemoryMB = d.memory
	}
	if fs.Changed("cpu") {
		req.CPUDemand = d.cpu
	}
	if fs.Changed("timeout") {
		req.TimeoutSeconds = d.timeout
	}
	if fs.Changed("zone") {
		req.AllowedZones = d.zones
	}
	if fs.Changed("env") {
		env, err := parseEnv(d.env)
		if err != nil {
			return req, err
		}
		req.Env = env
	}
	if fs.Changed("max-concurrency") {
		req.MaxConcurrency = d.concurrency
	}
	if fs.Changed("arch") {
		req.SupportedArchs = d.archs
	}
	if fs.Changed("custom_image") {
		req.CustomImage = d.customImage
	} else if req.Runtime != function.RuntimeCustom {
		req.CustomImage = ""
	}
	req.TarFunctionCode = ""
	if d.src != "" {
		code, err := d.code()
		if err != nil {
			return req, err
		}
		req.TarFunctionCode = code
	}
	if req.TarFunctionCode == "" && req.Runtime != function.RuntimeCustom {
		return req, errors.New("--src is required: the node does not return function code, so update needs it again")
	}
	return req, nil
}

func (c *cli) deleteCmd() *cobra.Command {
	return c.functionCmd(&cobra.Command{
		Use:     "delete [-f] NAME",
		Short:   "Delete a function",
		Example: "  serverledge-cli delete -f hello",
	}, func(ctx context.Context, cl *client.Client, name string) (any, error) {
		return cl.Delete(ctx, name)
	})
}

func (c *cli) listCmd() *cobra.Command {
	return withOutput(c.nodeCmd(&cobra.Command{
		Use:     "list",
		Short:   "List the functions",
		Example: "  serverledge-cli list",
	}, func(ctx context.Context, cl *client.Client) (any, error) {
		return cl.List(ctx)
	}))
}

func (c *cli) describeCmd() *cobra.Command {
	return withOutput(c.functionCmd(&cobra.Command{
		Use:     "describe [-f] NAME",
		Short:   "Print a function's definition (without its code)",
		Example: "  serverledge-cli describe -f hello",
	}, func(ctx context.Context, cl *client.Client, name string) (any, error) {
		return cl.Describe(ctx, name)
	}))
}

// retOutputAlias makes --ret_output, the name older CLIs used, an alias of --return_output.
func retOutputAlias(_ *pflag.FlagSet, name string) pflag.NormalizedName {
	if name == "ret_output" {
		name = "return_output"
	}
	return pflag.NormalizedName(name)
}

func (c *cli) invokeCmd() *cobra.Command {
	var (
		name         string
		params       []string
		paramsFile   string
		respTime     float64
		class        string
		async        bool
		returnOutput bool
		noOffload    bool
	)
	cmd := &cobra.Command{
		Use:   "invoke [-f] NAME [-p name:value]... [-j params.json]",
		Short: "Invoke a function",
		Example: "  serverledge-cli invoke -f isprime -p n:17\n" +
			"  serverledge-cli invoke -f hello -p name:Ada -c performance --resptime 0.5 -o\n" +
			"  serverledge-cli invoke -f hello -j params.json -a",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fn, err := functionName(name, args)
			if err != nil {
				return err
			}
			qosClass, err := parseClass(class)
			if err != nil {
				return err
			}
			p, err := buildParams(paramsFile, params)
			if err != nil {
				return err
			}
			req := wire.InvocationRequest{
				Params:       p,
				QoSClass:     qosClass,
				QoSMaxRespT:  respTime,
				ReturnOutput: returnOutput,
			}
			if noOffload {
				no := false
				req.CanDoOffloading = &no
			}
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			if async {
				resp, err := cl.InvokeAsync(cmd.Context(), fn, req)
				if err != nil {
					return err
				}
				return c.printJSON(resp)
			}
			resp, err := cl.Invoke(cmd.Context(), fn, req)
			if err != nil {
				return err
			}
			return c.printResult(resp)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&name, "function", "f", "", "function name")
	fs.StringArrayVarP(&params, "param", "p", nil, "parameter name:value (repeatable); the value is JSON when it parses, else a string")
	fs.StringVarP(&paramsFile, "params_file", "j", "", "file holding the parameters as a JSON object")
	fs.Float64Var(&respTime, "resptime", 0, "maximum response time in seconds (QoSMaxRespT; 0: none)")
	fs.StringVarP(&class, "class", "c", "low", "QoS class: low, performance or availability (or 0, 1, 2)")
	fs.BoolVarP(&async, "async", "a", false, "invoke asynchronously and print the request id")
	fs.BoolVarP(&returnOutput, "return_output", "o", false, "return the function's output (alias --ret_output)")
	fs.BoolVar(&noOffload, "no_offload", false, "forbid offloading to other nodes (CanDoOffloading false)")
	fs.SetNormalizeFunc(retOutputAlias)
	return c.completeFunctionNames(cmd)
}

// printResult prints an invocation response; a function that reported a
// failure makes the command fail after the response is printed.
func (c *cli) printResult(resp *wire.InvocationResponse) error {
	if err := c.printJSON(resp); err != nil {
		return err
	}
	if resp.Success {
		return nil
	}
	msg := "the function failed"
	if resp.Error != "" {
		msg += ": " + resp.Error
	}
	return &exitCodeError{code: exitError, msg: msg}
}

func (c *cli) pollCmd() *cobra.Command {
	var (
		reqID string
		wait  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "poll --request ID",
		Short: "Print the result of an asynchronous invocation",
		Long: "poll prints the result of an asynchronous invocation. While the request is\n" +
			"still running it says so and exits with status 3; with --wait it asks again\n" +
			"until the result is there or the wait is over.",
		Example: "  serverledge-cli poll --request 6f1c2d3e-...\n" +
			"  serverledge-cli poll --request 6f1c2d3e-... --wait 30s",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := reqID
			if len(args) == 1 {
				if id != "" && id != args[0] {
					return fmt.Errorf("request named twice: --request %s and argument %s", id, args[0])
				}
				id = args[0]
			}
			if id == "" {
				return errors.New("missing request id: use --request <id>")
			}
			cl, err := c.client(cmd)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			deadline := time.Now().Add(wait)
			for {
				resp, err := cl.Poll(ctx, id)
				if err == nil {
					return c.printResult(resp)
				}
				if !errors.Is(err, client.ErrPending) {
					return err
				}
				left := time.Until(deadline)
				if left <= 0 {
					fmt.Fprintf(c.stdout, "Request %s is still running.\n", id)
					return &exitCodeError{code: exitPending}
				}
				t := time.NewTimer(min(left, pollInterval))
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
			}
		},
	}
	cmd.Flags().StringVar(&reqID, "request", "", "request id printed by invoke --async")
	cmd.Flags().DurationVar(&wait, "wait", 0, "keep polling for up to this long (e.g. 30s; 0: ask once)")
	return cmd
}

func (c *cli) statusCmd() *cobra.Command {
	return withOutput(c.nodeCmd(&cobra.Command{
		Use:     "status",
		Short:   "Print the node's status",
		Example: "  serverledge-cli status -H 127.0.0.1 -P 1323",
	}, func(ctx context.Context, cl *client.Client) (any, error) {
		return cl.Status(ctx)
	}))
}

func (c *cli) prewarmCmd() *cobra.Command {
	var (
		name      string
		count     int
		forcePull bool
	)
	cmd := &cobra.Command{
		Use:     "prewarm [-f] NAME [--count N]",
		Short:   "Start idle containers of a function ahead of its invocations",
		Example: "  serverledge-cli prewarm -f hello --count 2",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fn, err := functionName(name, args)
			if err != nil {
				return err
			}
			if count < 0 {
				return fmt.Errorf("invalid --count %d: want 0 or more", count)
			}
			return c.callAndPrint(cmd, func(ctx context.Context, cl *client.Client) (any, error) {
				return cl.Prewarm(ctx, wire.PrewarmRequest{Function: fn, Instances: count, ForceImagePull: forcePull})
			})
		},
	}
	cmd.Flags().StringVarP(&name, "function", "f", "", "function name")
	cmd.Flags().IntVar(&count, "count", 1, "containers to start (0: only make sure the image is there)")
	cmd.Flags().BoolVar(&forcePull, "force_pull", false, "pull the function's image again before starting containers")
	return c.completeFunctionNames(cmd)
}
