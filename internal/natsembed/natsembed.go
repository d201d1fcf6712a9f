// Package natsembed runs nats-server in-process with JetStream, for `lae scan`, `lae serve`
// and tests: the same server and the same stream configs as a deployment, without a process
// to manage.
package natsembed

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/lae-screening/lae/internal/jsretry"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Options configures the embedded server.
type Options struct {
	// StoreDir is the JetStream directory; a temporary one (removed on Close) when empty.
	StoreDir string
	// Listen exposes the server on host:port ("" = in-process only, no TCP).
	Host string
	Port int
	// Retention of the provisioned streams.
	Retention laev1.Retention
	// Token, when set, is required from every client, in-process ones included: a server
	// that listens must not let any local process submit files, forge verdicts or attach
	// workers.
	Token string
}

// Server is a running embedded nats-server with the lae streams provisioned.
type Server struct {
	srv     *server.Server
	token   string
	tempDir string
	NC      *nats.Conn
	JS      jetstream.JetStream
}

// Start starts the server, waits until it is ready, connects to it and provisions streams.
func Start(ctx context.Context, o Options) (*Server, error) {
	s := &Server{token: o.Token}
	dir := o.StoreDir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "lae-nats-")
		if err != nil {
			return nil, fmt.Errorf("embedded nats: temp dir: %w", err)
		}
		dir, s.tempDir = tmp, tmp
	}
	opts := &server.Options{
		ServerName:    "lae-embedded",
		JetStream:     true,
		StoreDir:      dir,
		NoSigs:        true,
		NoLog:         true,
		MaxPayload:    laev1.MaxCropPayload,
		Authorization: o.Token,
	}
	if o.Host == "" && o.Port == 0 {
		opts.DontListen = true
	} else {
		opts.Host, opts.Port = o.Host, o.Port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("embedded nats: new server: %w", err)
	}
	s.srv = srv
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		s.Close()
		return nil, fmt.Errorf("embedded nats: not ready after 10s")
	}
	nc, err := s.Connect("lae-embedded")
	if err != nil {
		s.Close()
		return nil, err
	}
	s.NC = nc
	js, err := jsretry.New(nc)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("embedded nats: jetstream: %w", err)
	}
	s.JS = js
	if err := laev1.Provision(ctx, js, o.Retention); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Connect opens a new client connection to the server (in-process when it does not listen).
func (s *Server) Connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.InProcessServer(s.srv), nats.Name(name), nats.MaxReconnects(-1)}
	if s.token != "" {
		opts = append(opts, nats.Token(s.token))
	}
	nc, err := nats.Connect(s.srv.ClientURL(), opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: connect: %w", err)
	}
	return nc, nil
}

// ClientURL is the server's URL for external clients (meaningful only when it listens).
func (s *Server) ClientURL() string { return s.srv.ClientURL() }

// Close drains the client connection, shuts the server down and removes a temporary store.
func (s *Server) Close() {
	if s.NC != nil {
		_ = s.NC.Drain()
	}
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
	s.cleanup()
}

func (s *Server) cleanup() {
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
}
