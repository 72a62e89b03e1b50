// Package wire holds the JSON types of the Serverledge HTTP API.
//
// Field names are PascalCase and must never be renamed: existing Serverledge
// clients and scripts depend on them (SPEC §2). New fields may be added.
package wire

import "github.com/serverledge/serverledge/internal/function"

// QoS class identifiers (SPEC §4).
const (
	// ClassLow is best effort, the default class.
	ClassLow = 0
	// ClassPerformance is for latency-sensitive requests.
	ClassPerformance = 1
	// ClassAvailability is for requests that must complete.
	ClassAvailability = 2
)

// Scheduling actions reported in InvocationResponse.SchedAction.
const (
	// ActionLocal means the request ran on the node that answered.
	ActionLocal = ""
	// ActionOffloaded means the request ran on another node.
	ActionOffloaded = "O"
)

// FunctionRequest is the body of POST /create and POST /update, and the
// definition returned by GET /function/{name} (without TarFunctionCode).
type FunctionRequest struct {
	Name            string   `json:"Name"`
	Runtime         string   `json:"Runtime"`
	MemoryMB        int64    `json:"MemoryMB"`
	CPUDemand       float64  `json:"CPUDemand"`
	Handler         string   `json:"Handler"`
	TarFunctionCode string   `json:"TarFunctionCode,omitempty"`
	CustomImage     string   `json:"CustomImage,omitempty"`
	AllowedZones    []string `json:"AllowedZones,omitempty"`
	TimeoutSeconds  float64  `json:"TimeoutSeconds,omitempty"`
	// MaxConcurrency is how many requests one container serves at once
	// (newest upstream release; default 1).
	MaxConcurrency int `json:"MaxConcurrency,omitempty"`
	// SupportedArchs lists GOARCH-style architectures (newest upstream
	// release; empty: any).
	SupportedArchs []string `json:"SupportedArchs,omitempty"`
	// Signature declares inputs and outputs (newest upstream release).
	Signature *function.Signature `json:"Signature,omitempty"`
	// Env holds the function's environment variables.
	Env map[string]string `json:"Env,omitempty"`
}

// CreatedResponse is the body of a successful POST /create.
type CreatedResponse struct {
	Created string `json:"Created"`
}

// UpdatedResponse is the body of a successful POST /update.
type UpdatedResponse struct {
	Updated string `json:"Updated"`
}

// DeleteRequest is the body of POST /delete.
type DeleteRequest struct {
	Name string `json:"Name"`
}

// DeletedResponse is the body of a successful POST /delete.
type DeletedResponse struct {
	Deleted string `json:"Deleted"`
}

// InvocationRequest is the body of POST /invoke/{name}.
//
// CanDoOffloading is a pointer so that an omitted field can be told apart
// from an explicit false; use OffloadingAllowed to read it.
type InvocationRequest struct {
	Params          map[string]any `json:"Params"`
	QoSClass        int            `json:"QoSClass"`
	QoSMaxRespT     float64        `json:"QoSMaxRespT"`
	CanDoOffloading *bool          `json:"CanDoOffloading,omitempty"`
	Async           bool           `json:"Async"`
	ReturnOutput    bool           `json:"ReturnOutput"`
}

// OffloadingAllowed reports whether the request may be offloaded: true when
// CanDoOffloading was omitted.
func (r *InvocationRequest) OffloadingAllowed() bool {
	return r.CanDoOffloading == nil || *r.CanDoOffloading
}

// InvocationResponse is the body of a sync POST /invoke/{name} and of
// GET /poll/{reqId}. All times are in seconds.
type InvocationResponse struct {
	Success        bool    `json:"Success"`
	Result         string  `json:"Result"`
	ResponseTime   float64 `json:"ResponseTime"`
	IsWarmStart    bool    `json:"IsWarmStart"`
	InitTime       float64 `json:"InitTime"`
	OffloadLatency float64 `json:"OffloadLatency"`
	Duration       float64 `json:"Duration"`
	SchedAction    string  `json:"SchedAction"`
	Output         string  `json:"Output"`
	// ReqID is the request id; useful for tracing, not part of the original API.
	ReqID string `json:"ReqId,omitempty"`
	// Error describes a failure when Success is false.
	Error string `json:"Error,omitempty"`
	// NodeURL is the node that executed the request.
	NodeURL string `json:"NodeUrl,omitempty"`
	// QueueingTime is the time the request waited in the node's queue,
	// in seconds (newest upstream release); it is part of InitTime.
	QueueingTime float64 `json:"QueueingTime,omitempty"`
	// ExecutionNode is the id of the node that executed the request.
	ExecutionNode string `json:"ExecutionNode,omitempty"`
	// ExecutionArea is the edge zone or cloud region of that node.
	ExecutionArea string `json:"ExecutionArea,omitempty"`
}

// AsyncResponse is the body of an async POST /invoke/{name}.
type AsyncResponse struct {
	ReqID string `json:"ReqId"`
}

// PollPending is the body of GET /poll/{reqId} for a request that is still
// running; the status code is 202 Accepted.
type PollPending struct {
	ReqID  string `json:"ReqId"`
	Status string `json:"Status"`
}

// PrewarmRequest is the body of POST /prewarm.
type PrewarmRequest struct {
	Function       string `json:"Function"`
	Instances      int    `json:"Instances"`
	ForceImagePull bool   `json:"ForceImagePull"`
}

// PrewarmResponse is the body of a successful POST /prewarm.
type PrewarmResponse struct {
	Prewarmed int `json:"Prewarmed"`
}

// Coordinates are Vivaldi-style network coordinates of a node.
type Coordinates struct {
	X      []float64 `json:"X"`
	Height float64   `json:"Height"`
	Error  float64   `json:"Error"`
}

// StatusResponse is the body of GET /status.
type StatusResponse struct {
	URL                     string         `json:"Url"`
	AvailableWarmContainers map[string]int `json:"AvailableWarmContainers"`
	AvailableMemMB          int64          `json:"AvailableMemMB"`
	AvailableCPUs           float64        `json:"AvailableCPUs"`
	DropCount               int64          `json:"DropCount"`
	Coordinates             Coordinates    `json:"Coordinates"`
	// Extra fields beyond the original API.
	NodeID         string         `json:"NodeId,omitempty"`
	Area           string         `json:"Area,omitempty"`
	Cloud          bool           `json:"Cloud"`
	BusyContainers map[string]int `json:"BusyContainers,omitempty"`
	StemCells      map[string]int `json:"StemCells,omitempty"`
	QueueLength    int            `json:"QueueLength"`
	HostMemTotalMB int64          `json:"HostMemTotalMB,omitempty"`
	HostMemFreeMB  int64          `json:"HostMemFreeMB,omitempty"`
	HostCPUPercent float64        `json:"HostCPUPercent,omitempty"`
	PoolMemoryMB   int64          `json:"PoolMemoryMB,omitempty"`
	PoolCPUs       float64        `json:"PoolCPUs,omitempty"`

	// Fields of the newest upstream release. Memory is in MB of the node's
	// pool budget, CPU in cores of its CPU budget. A zero is omitted, which
	// decoders read as the same zero.

	// TotalMemory is the pool's memory budget.
	TotalMemory int64 `json:"TotalMemory,omitempty"`
	// AvailableMemory is the memory free or reclaimable from idle
	// containers: TotalMemory less what busy containers hold.
	AvailableMemory int64 `json:"AvailableMemory,omitempty"`
	// FreeMemory is the memory held by no container at all.
	FreeMemory int64 `json:"FreeMemory,omitempty"`
	// TotalCPU is the pool's CPU budget.
	TotalCPU float64 `json:"TotalCPU,omitempty"`
	// UsedCPU is the CPU taken by busy containers.
	UsedCPU float64 `json:"UsedCPU,omitempty"`
	// LoadAvg is the host's 1, 5 and 15 minute load average (-1 each when
	// unknown).
	LoadAvg []float64 `json:"LoadAvg,omitempty"`
	// LastUpdateTime is when these figures were taken, in Unix seconds.
	LastUpdateTime int64 `json:"LastUpdateTime,omitempty"`
}

// Response headers a node sets on every invoke reply; the newest upstream
// load balancer reads them to track its targets without polling /status.
const (
	// HeaderNodeName carries the node's id.
	HeaderNodeName = "Serverledge-Node-Name"
	// HeaderFreeMem carries StatusResponse.AvailableMemory, in whole MB.
	HeaderFreeMem = "Serverledge-Free-Mem"
	// HeaderFreeCPU carries TotalCPU less UsedCPU, in cores.
	HeaderFreeCPU = "Serverledge-Free-CPU"
	// HeaderTimestamp carries when those figures were taken, in Unix seconds.
	HeaderTimestamp = "Serverledge-Timestamp"
	// HeaderNodeArch carries the node's GOARCH (amd64, arm64, ...).
	HeaderNodeArch = "Serverledge-Node-Arch"
)
