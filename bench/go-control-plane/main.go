// A small go-control-plane ADS server used as a yardstick by meshbridge's
// benchmark (bench/run.mjs). It is not part of meshbridge.
//
// It serves, to every node, the resources in -resources: four files
// (cds.pb, eds.pb, lds.pb, rds.pb), each an encoded DiscoveryResponse written
// by the benchmark from meshbridge's own translation, so both servers send
// byte-identical resources. An endpoint change arrives as an encoded
// ClusterLoadAssignment POSTed to /cla on -control. With -cache snapshot the
// server then sets a new snapshot, as a control plane built on
// go-control-plane's snapshot cache would (every watch diffs every resource);
// with -cache linear it updates that one resource in a linear cache per type
// (a MuxCache of four LinearCaches), what a Go engineer reaches for when
// endpoints churn.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	// Types nested in the resources' Anys, so that they can be unmarshalled.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// Every node gets the same snapshot, as every meshbridge sidecar sees the same view.
type oneGroup struct{}

func (oneGroup) ID(*core.Node) string { return "fleet" }

type state struct {
	mu        sync.Mutex
	cache     cache.SnapshotCache
	resources map[resource.Type]map[string]types.Resource
	version   int
}

// linearCaches serves each type from its own LinearCache; a change touches one resource.
func linearCaches(resources map[resource.Type]map[string]types.Resource) (*cache.MuxCache, *cache.LinearCache) {
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        map[string]cache.Cache{},
	}
	var endpoints *cache.LinearCache
	for typ, byName := range resources {
		linear := cache.NewLinearCache(typ, cache.WithInitialResources(byName))
		mux.Caches[typ] = linear
		if typ == resource.EndpointType {
			endpoints = linear
		}
	}
	return mux, endpoints
}

func load(dir string) (map[resource.Type]map[string]types.Resource, error) {
	files := map[resource.Type]string{
		resource.ClusterType:  "cds.pb",
		resource.EndpointType: "eds.pb",
		resource.ListenerType: "lds.pb",
		resource.RouteType:    "rds.pb",
	}
	out := map[resource.Type]map[string]types.Resource{}
	for typ, file := range files {
		raw, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		var response discovery.DiscoveryResponse
		if err := proto.Unmarshal(raw, &response); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		byName := map[string]types.Resource{}
		for _, any := range response.Resources {
			message, err := anypb.UnmarshalNew(any, proto.UnmarshalOptions{})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			byName[cache.GetResourceName(message)] = message
		}
		out[typ] = byName
	}
	return out, nil
}

func (s *state) publish() error {
	s.version++
	byType := map[resource.Type][]types.Resource{}
	for typ, byName := range s.resources {
		list := make([]types.Resource, 0, len(byName))
		for _, r := range byName {
			list = append(list, r)
		}
		byType[typ] = list
	}
	snapshot, err := cache.NewSnapshot(strconv.Itoa(s.version), byType)
	if err != nil {
		return err
	}
	return s.cache.SetSnapshot(context.Background(), "fleet", snapshot)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "xDS gRPC address")
	control := flag.String("control", "127.0.0.1:0", "HTTP address for changes")
	dir := flag.String("resources", "", "directory with cds.pb, eds.pb, lds.pb, rds.pb")
	kind := flag.String("cache", "snapshot", "snapshot or linear")
	flag.Parse()

	resources, err := load(*dir)
	if err != nil {
		log.Fatal(err)
	}
	s := &state{cache: cache.NewSnapshotCache(true, oneGroup{}, nil), resources: resources}
	var served cache.Cache = s.cache
	var linearEndpoints *cache.LinearCache
	switch *kind {
	case "snapshot":
		if err := s.publish(); err != nil {
			log.Fatal(err)
		}
	case "linear":
		served, linearEndpoints = linearCaches(resources)
	default:
		log.Fatalf("-cache %q: want snapshot or linear", *kind)
	}

	grpcServer := grpc.NewServer(
		grpc.MaxConcurrentStreams(1_000_000),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30e9, Timeout: 10e9}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10e9, PermitWithoutStream: true}),
	)
	xds := server.NewServer(context.Background(), served, nil)
	discovery.RegisterAggregatedDiscoveryServiceServer(grpcServer, xds)
	xdsListener, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	go func() { log.Fatal(grpcServer.Serve(xdsListener)) }()

	http.HandleFunc("/cla", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var cla endpoint.ClusterLoadAssignment
		if err := proto.Unmarshal(body, &cla); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if linearEndpoints != nil {
			if err := linearEndpoints.UpdateResource(cla.ClusterName, &cla); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.resources[resource.EndpointType][cla.ClusterName] = &cla
		if err := s.publish(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	controlListener, err := net.Listen("tcp", *control)
	if err != nil {
		log.Fatal(err)
	}
	// The benchmark reads these two lines to find the ports.
	fmt.Printf("xds %s\ncontrol %s\n", xdsListener.Addr(), controlListener.Addr())
	log.Fatal(http.Serve(controlListener, nil))
}
