// Command grpc-go-xds-client is grpc-go's proxyless xDS client, driven by the
// meshbridge end-to-end tests over JSON lines: one command per stdin line, one
// answer per stdout line, matched by "id". With "serve" as its first argument
// it is instead an Echo server over mutual TLS with meshbridge agent's files
// (serve.go). It exists so the tests exercise the
// xDS client most proxyless fleets run, not only grpc-js-xds.
//
// The bootstrap comes from GRPC_XDS_BOOTSTRAP / GRPC_XDS_BOOTSTRAP_CONFIG, as
// for any grpc-go program; the tests write it with `meshbridge bootstrap --grpc`.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	csdspb "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	"google.golang.org/grpc/xds/csds"

	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and the xDS balancers
)

// The limits keep a runaway test from making the client unbounded.
const (
	maxLineBytes    = 1 << 20
	maxCallsPerCmd  = 10_000
	maxParallel     = 64
	maxDeadline     = 5 * time.Minute
	defaultDeadline = 5 * time.Second
)

type command struct {
	ID         int               `json:"id"`
	Op         string            `json:"op"` // "call" or "csds"
	Target     string            `json:"target"`
	Count      int               `json:"count"`
	Parallel   int               `json:"parallel"`
	DeadlineMs int               `json:"deadlineMs"`
	Metadata   map[string]string `json:"metadata"`
	Method     string            `json:"method"`
	// IntervalMs paces the calls (one started every interval) as steady load, rather than all at once.
	IntervalMs int `json:"intervalMs"`
}

type callResult struct {
	Backend   string `json:"backend,omitempty"`
	Peer      string `json:"peer,omitempty"`
	Code      string `json:"code"`
	Message   string `json:"message,omitempty"`
	ElapsedMs int64  `json:"elapsedMs"`
	// StartedAt is when the call began (Unix ms), so a test can split a run into phases.
	StartedAt int64 `json:"startedAt"`
	// Reply is EchoReply.message: what the mTLS server of "serve" saw of this client.
	Reply string `json:"reply,omitempty"`
	// The certificate the server presented, when the call went over TLS.
	ServerID     string `json:"serverId,omitempty"`
	ServerSerial string `json:"serverSerial,omitempty"`
	ServerIssuer string `json:"serverIssuer,omitempty"`
}

type answer struct {
	ID    int          `json:"id"`
	Calls []callResult `json:"calls,omitempty"`
	CSDS  any          `json:"csds,omitempty"`
	Error string       `json:"error,omitempty"`
}

// rawCodec sends and receives already-encoded protobuf bytes, so the client
// needs no generated code for the Echo service.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func encodeEchoRequest(message string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), message)
}

// decodeEchoReply returns fields 2 (backend) and 1 (message) of meshbridge.example.EchoReply.
func decodeEchoReply(data []byte) (backend string, message string, err error) {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return "", "", protowire.ParseError(n)
		}
		data = data[n:]
		if typ == protowire.BytesType {
			value, m := protowire.ConsumeBytes(data)
			if m < 0 {
				return "", "", protowire.ParseError(m)
			}
			switch num {
			case 1:
				message = string(value)
			case 2:
				backend = string(value)
			}
			data = data[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, data)
		if m < 0 {
			return "", "", protowire.ParseError(m)
		}
		data = data[m:]
	}
	return backend, message, nil
}

type client struct {
	mu       sync.Mutex
	channels map[string]*grpc.ClientConn
	out      *json.Encoder
	outMu    sync.Mutex
}

// channel keeps one ClientConn per target, as an application would, so a
// series of commands sees the same xDS watches and load-balancer state.
func (c *client) channel(target string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.channels[target]; ok {
		return cc, nil
	}
	// xDS credentials fall back to plaintext when the cluster carries no TLS,
	// and use what the control plane sends when it does.
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return nil, err
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	c.channels[target] = cc
	return cc, nil
}

func (c *client) reply(a answer) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	_ = c.out.Encode(a)
}

func (c *client) call(cmd command) answer {
	cc, err := c.channel(cmd.Target)
	if err != nil {
		return answer{ID: cmd.ID, Error: err.Error()}
	}
	count := min(max(cmd.Count, 1), maxCallsPerCmd)
	parallel := min(max(cmd.Parallel, 1), maxParallel)
	deadline := defaultDeadline
	if cmd.DeadlineMs > 0 {
		deadline = min(time.Duration(cmd.DeadlineMs)*time.Millisecond, maxDeadline)
	}
	method := cmd.Method
	if method == "" {
		method = "/meshbridge.example.Echo/Echo"
	}
	results := make([]callResult, count)
	next := make(chan int)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = c.one(cc, method, cmd.Metadata, deadline)
			}
		}()
	}
	interval := time.Duration(min(max(cmd.IntervalMs, 0), 60_000)) * time.Millisecond
	start := time.Now()
	for i := range count {
		if interval > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return answer{ID: cmd.ID, Calls: results}
}

func (c *client) one(cc *grpc.ClientConn, method string, md map[string]string, deadline time.Duration) callResult {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if len(md) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, metadata.New(md))
	}
	request := encodeEchoRequest("hi")
	var reply []byte
	var from peer.Peer
	started := time.Now()
	err := cc.Invoke(ctx, method, &request, &reply, grpc.ForceCodec(rawCodec{}), grpc.Peer(&from))
	result := callResult{ElapsedMs: time.Since(started).Milliseconds(), StartedAt: started.UnixMilli()}
	if from.Addr != nil {
		result.Peer = from.Addr.String()
	}
	if info, ok := from.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
		leaf := info.State.PeerCertificates[0]
		result.ServerSerial = leaf.SerialNumber.Text(16)
		result.ServerIssuer = leaf.Issuer.String()
		if len(leaf.URIs) == 1 {
			result.ServerID = leaf.URIs[0].String()
		}
	}
	if err != nil {
		st := status.Convert(err)
		result.Code = codeName(st.Code())
		result.Message = st.Message()
		return result
	}
	result.Code = "OK"
	backend, message, err := decodeEchoReply(reply)
	if err != nil {
		result.Code = "INTERNAL"
		result.Message = fmt.Sprintf("undecodable EchoReply: %v", err)
	}
	result.Backend = backend
	result.Reply = message
	return result
}

// codeName spells codes as grpc-js's status enum does (UNAVAILABLE, not Unavailable),
// so the tests compare both clients' outcomes directly.
func codeName(code codes.Code) string {
	names := map[codes.Code]string{
		codes.OK: "OK", codes.Canceled: "CANCELLED", codes.Unknown: "UNKNOWN", codes.InvalidArgument: "INVALID_ARGUMENT",
		codes.DeadlineExceeded: "DEADLINE_EXCEEDED", codes.NotFound: "NOT_FOUND", codes.AlreadyExists: "ALREADY_EXISTS",
		codes.PermissionDenied: "PERMISSION_DENIED", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.Aborted: "ABORTED", codes.OutOfRange: "OUT_OF_RANGE",
		codes.Unimplemented: "UNIMPLEMENTED", codes.Internal: "INTERNAL", codes.Unavailable: "UNAVAILABLE",
		codes.DataLoss: "DATA_LOSS", codes.Unauthenticated: "UNAUTHENTICATED",
	}
	if name, ok := names[code]; ok {
		return name
	}
	return fmt.Sprintf("CODE_%d", code)
}

// csdsResource is one resource as the client holds it. The resource bodies are
// left out: decoding them would need every extension type registered, and the
// tests ask only what the client made of each name.
type csdsResource struct {
	TypeURL      string `json:"type_url"`
	Name         string `json:"name"`
	VersionInfo  string `json:"version_info,omitempty"`
	ClientStatus string `json:"client_status"`
	ErrorDetails string `json:"error_details,omitempty"`
}

// csdsDump asks this process's own xDS client what it holds, through grpc-go's
// CSDS service: the client's view of every resource (ACKED, NACKED,
// DOES_NOT_EXIST, REQUESTED) without parsing its logs.
func csdsDump(ctx context.Context, server *csds.ClientStatusDiscoveryServer) ([]csdsResource, error) {
	response, err := server.FetchClientStatus(ctx, &csdspb.ClientStatusRequest{})
	if err != nil {
		return nil, err
	}
	resources := []csdsResource{}
	for _, config := range response.GetConfig() {
		for _, generic := range config.GetGenericXdsConfigs() {
			resources = append(resources, csdsResource{
				TypeURL:      generic.GetTypeUrl(),
				Name:         generic.GetName(),
				VersionInfo:  generic.GetVersionInfo(),
				ClientStatus: generic.GetClientStatus().String(),
				ErrorDetails: generic.GetErrorState().GetDetails(),
			})
		}
	}
	return resources, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		serveMain(os.Args[2:])
		return
	}
	c := &client{channels: map[string]*grpc.ClientConn{}, out: json.NewEncoder(os.Stdout)}
	csdsServer, err := csds.NewClientStatusDiscoveryServer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "grpc-go-xds-client: CSDS: %v\n", err)
		os.Exit(2)
	}
	// Ready line: the driver waits for it before sending commands.
	c.reply(answer{ID: 0})
	input := bufio.NewReaderSize(os.Stdin, 64*1024)
	var pending sync.WaitGroup
	for {
		line, err := readBoundedLine(input)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			c.reply(answer{ID: -1, Error: err.Error()})
			continue
		}
		var cmd command
		if err := json.Unmarshal(line, &cmd); err != nil {
			c.reply(answer{ID: -1, Error: fmt.Sprintf("bad command: %v", err)})
			continue
		}
		pending.Add(1)
		go func() {
			defer pending.Done()
			switch cmd.Op {
			case "call":
				c.reply(c.call(cmd))
			case "csds":
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				dump, err := csdsDump(ctx, csdsServer)
				if err != nil {
					c.reply(answer{ID: cmd.ID, Error: err.Error()})
					return
				}
				c.reply(answer{ID: cmd.ID, CSDS: dump})
			default:
				c.reply(answer{ID: cmd.ID, Error: fmt.Sprintf("unknown op %q", cmd.Op)})
			}
		}()
	}
	pending.Wait()
	csdsServer.Close()
	c.mu.Lock()
	for _, cc := range c.channels {
		cc.Close()
	}
	c.mu.Unlock()
}

// readBoundedLine reads one line, refusing lines over maxLineBytes rather than
// buffering whatever the driver sends.
func readBoundedLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxLineBytes {
			for isPrefix {
				_, isPrefix, err = r.ReadLine()
				if err != nil {
					return nil, err
				}
			}
			return nil, fmt.Errorf("command line longer than %d bytes", maxLineBytes)
		}
		if !isPrefix {
			return line, nil
		}
	}
}
