// The "serve" mode: a grpc-go Echo server that terminates mutual TLS with the
// files `meshbridge agent` writes (cert-chain.pem, key.pem, root-cert.pem),
// as a VM workload without a sidecar would. It requires a client certificate
// from the trust bundle and answers with what it saw of the caller, so a test
// can check the caller's SPIFFE ID and which certificate it presented.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"google.golang.org/grpc/codes"
)

// maxPemBytes bounds what is read from the agent directory.
const maxPemBytes = 1 << 20

// agentFiles holds the last good certificate and bundle from an agent
// directory. Each handshake looks at the files' stamps; a change is read, and
// a pair that does not match (the agent is between writing key and chain) or
// a bundle that does not parse leaves the previous material in use.
type agentFiles struct {
	dir string

	mu        sync.Mutex
	pairStamp string
	rootStamp string
	pair      *tls.Certificate
	roots     *x509.CertPool
	loads     int
}

func stampOf(paths ...string) (string, error) {
	var b bytes.Buffer
	for _, p := range paths {
		info, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s:%d:%d;", p, info.Size(), info.ModTime().UnixNano())
	}
	return b.String(), nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPemBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPemBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxPemBytes)
	}
	return data, nil
}

func (a *agentFiles) refresh() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	chain, key, root := filepath.Join(a.dir, "cert-chain.pem"), filepath.Join(a.dir, "key.pem"), filepath.Join(a.dir, "root-cert.pem")
	if stamp, err := stampOf(chain, key); err == nil && stamp != a.pairStamp {
		certPem, err1 := readBounded(chain)
		keyPem, err2 := readBounded(key)
		if err := errors.Join(err1, err2); err == nil {
			if pair, err := tls.X509KeyPair(certPem, keyPem); err == nil {
				a.pair, a.pairStamp = &pair, stamp
				a.loads++
			}
		}
	}
	if stamp, err := stampOf(root); err == nil && stamp != a.rootStamp {
		if pem, err := readBounded(root); err == nil {
			pool := x509.NewCertPool()
			if pool.AppendCertsFromPEM(pem) {
				a.roots, a.rootStamp = pool, stamp
			}
		}
	}
	if a.pair == nil || a.roots == nil {
		return fmt.Errorf("no certificate and trust bundle in %s yet", a.dir)
	}
	return nil
}

func (a *agentFiles) config(*tls.ClientHelloInfo) (*tls.Config, error) {
	if err := a.refresh(); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return &tls.Config{
		Certificates: []tls.Certificate{*a.pair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    a.roots,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
	}, nil
}

// seenCaller is what the server reports of the certificate a caller presented.
type seenCaller struct {
	SpiffeID string `json:"spiffeId"`
	Serial   string `json:"serial"`
	Issuer   string `json:"issuer"`
}

func echoHandler(name string) grpc.StreamHandler {
	return func(_ any, stream grpc.ServerStream) error {
		var request []byte
		if err := stream.RecvMsg(&request); err != nil {
			return err
		}
		from, ok := peer.FromContext(stream.Context())
		if !ok {
			return status.Error(codes.Internal, "no peer")
		}
		info, ok := from.AuthInfo.(credentials.TLSInfo)
		if !ok || len(info.State.PeerCertificates) == 0 {
			return status.Error(codes.Unauthenticated, "no client certificate")
		}
		leaf := info.State.PeerCertificates[0]
		seen := seenCaller{Serial: leaf.SerialNumber.Text(16), Issuer: leaf.Issuer.String()}
		if len(leaf.URIs) == 1 {
			seen.SpiffeID = leaf.URIs[0].String()
		}
		text, _ := json.Marshal(seen)
		// EchoReply: message (1) carries what was seen of the caller, backend (2) the server's name.
		reply := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), string(text))
		reply = protowire.AppendString(protowire.AppendTag(reply, 2, protowire.BytesType), name)
		return stream.SendMsg(&reply)
	}
}

func serveMain(args []string) {
	flags := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := flags.String("listen", "127.0.0.1:0", "address to listen on")
	dir := flags.String("certs", "", "meshbridge agent's --out directory")
	name := flags.String("name", "server", "the name answered as EchoReply.backend")
	maxAge := flags.Duration("max-connection-age", 0, "close each connection (gracefully) after this long, so callers handshake again")
	_ = flags.Parse(args)
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "serve: -certs is required")
		os.Exit(2)
	}
	files := &agentFiles{dir: *dir}
	if err := files.refresh(); err != nil {
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
		os.Exit(2)
	}
	options := []grpc.ServerOption{
		grpc.Creds(credentials.NewTLS(&tls.Config{GetConfigForClient: files.config, MinVersion: tls.VersionTLS12})),
		grpc.UnknownServiceHandler(echoHandler(*name)),
		grpc.ForceServerCodec(rawCodec{}),
	}
	if *maxAge > 0 {
		// The grace lets calls in flight finish: a client moves to a new connection without failing one.
		options = append(options, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: *maxAge, MaxConnectionAgeGrace: 30 * time.Second}))
	}
	server := grpc.NewServer(options...)
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
		os.Exit(2)
	}
	// Ready line with the bound address; the driver reads it, then closes stdin to stop the server.
	_ = json.NewEncoder(os.Stdout).Encode(map[string]string{"listening": listener.Addr().String()})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		server.GracefulStop()
	}()
	if err := server.Serve(listener); err != nil {
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
		os.Exit(1)
	}
}
