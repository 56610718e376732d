// A small go-control-plane ADS server used as a yardstick by meshbridge's
// benchmark (bench/run.mjs). It is not part of meshbridge.
//
// It serves, to every node, the resources in -resources: four files
// (cds.pb, eds.pb, lds.pb, rds.pb), each an encoded DiscoveryResponse written
// by the benchmark from meshbridge's own translation, so both servers send
// byte-identical resources. With -groups N (the scoped fleet) it serves a
// node the four files in g<n>, n being the group its Istio metadata LABELS
// name, as meshbridge serves that group's Sidecar view. An endpoint change
// arrives as an encoded ClusterLoadAssignment POSTed to /cla on -control.
// With -cache snapshot the server then sets a new snapshot for every group
// serving it, as a control plane built on go-control-plane's snapshot cache
// would (every watch diffs every resource); with -cache linear it updates
// that one resource in a linear cache per group and type (a MuxCache of
// LinearCaches), what a Go engineer reaches for when endpoints churn.
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

// A group of nodes served the same resources: the whole fleet, or with
// -groups one Sidecar group of the scoped fleet (a node names its group in
// Istio's metadata LABELS, as the benchmark's clients do for meshbridge).
type group struct {
	id        string
	resources map[resource.Type]map[string]types.Resource
	version   int
	// The assignments the group serves, apart from resources: a linear cache
	// takes resources' maps over, so they are its to read and write.
	assignments map[string]bool
	// Linear caches only: the group's endpoints, where a change lands.
	endpoints *cache.LinearCache
}

func newGroup(id string, resources map[resource.Type]map[string]types.Resource) *group {
	assignments := map[string]bool{}
	for name := range resources[resource.EndpointType] {
		assignments[name] = true
	}
	return &group{id: id, resources: resources, assignments: assignments}
}

const wholeFleet = "fleet"

type byLabel struct{ grouped bool }

func (h byLabel) ID(node *core.Node) string {
	if !h.grouped {
		return wholeFleet
	}
	labels := node.GetMetadata().GetFields()["LABELS"].GetStructValue()
	return "g" + labels.GetFields()["group"].GetStringValue()
}

type state struct {
	mu       sync.Mutex
	snapshot cache.SnapshotCache
	groups   []*group
}

// linearCaches serves each group's types from a LinearCache each; a change touches one resource.
func linearCaches(hash byLabel, groups []*group) *cache.MuxCache {
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return hash.ID(r.GetNode()) + " " + r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return hash.ID(r.GetNode()) + " " + r.GetTypeUrl() },
		Caches:        map[string]cache.Cache{},
	}
	for _, g := range groups {
		for typ, byName := range g.resources {
			linear := cache.NewLinearCache(typ, cache.WithInitialResources(byName))
			mux.Caches[g.id+" "+typ] = linear
			if typ == resource.EndpointType {
				g.endpoints = linear
			}
		}
	}
	return mux
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

func (s *state) publish(g *group) error {
	g.version++
	byType := map[resource.Type][]types.Resource{}
	for typ, byName := range g.resources {
		list := make([]types.Resource, 0, len(byName))
		for _, r := range byName {
			list = append(list, r)
		}
		byType[typ] = list
	}
	snapshot, err := cache.NewSnapshot(strconv.Itoa(g.version), byType)
	if err != nil {
		return err
	}
	return s.snapshot.SetSnapshot(context.Background(), g.id, snapshot)
}

// change replaces one ClusterLoadAssignment in every group that serves it.
func (s *state) change(cla *endpoint.ClusterLoadAssignment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.groups {
		if !g.assignments[cla.ClusterName] {
			continue
		}
		if g.endpoints != nil {
			if err := g.endpoints.UpdateResource(cla.ClusterName, cla); err != nil {
				return err
			}
			continue
		}
		g.resources[resource.EndpointType][cla.ClusterName] = cla
		if err := s.publish(g); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "xDS gRPC address")
	control := flag.String("control", "127.0.0.1:0", "HTTP address for changes")
	dir := flag.String("resources", "", "directory with cds.pb, eds.pb, lds.pb, rds.pb")
	kind := flag.String("cache", "snapshot", "snapshot or linear")
	groups := flag.Int("groups", 0, "serve each node its group's resources, from g0 … g<N-1> under -resources (0: every node the same)")
	flag.Parse()

	hash := byLabel{grouped: *groups > 0}
	s := &state{snapshot: cache.NewSnapshotCache(true, hash, nil)}
	if *groups == 0 {
		resources, err := load(*dir)
		if err != nil {
			log.Fatal(err)
		}
		s.groups = []*group{newGroup(wholeFleet, resources)}
	}
	for g := 0; g < *groups; g++ {
		resources, err := load(filepath.Join(*dir, "g"+strconv.Itoa(g)))
		if err != nil {
			log.Fatal(err)
		}
		s.groups = append(s.groups, newGroup("g"+strconv.Itoa(g), resources))
	}
	var served cache.Cache = s.snapshot
	switch *kind {
	case "snapshot":
		for _, g := range s.groups {
			if err := s.publish(g); err != nil {
				log.Fatal(err)
			}
		}
	case "linear":
		served = linearCaches(hash, s.groups)
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
		if err := s.change(&cla); err != nil {
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
