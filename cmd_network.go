package main

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"sstack/internal/api"
)

// networkFlag declares --network: "host" runs every service on the host's
// network (a host where the stack's own cannot be made).
func networkFlag(c *cobra.Command, o *options) {
	c.Flags().StringVar(&o.network, "network", "", "host: run every service on the host's network instead of the stack's own (for hosts without slirp4netns or a usable /dev/net/tun)")
}

// portsColumn is ps's PORTS as docker compose prints it.
func portsColumn(pubs []api.Publisher) string {
	out := make([]string, len(pubs))
	for i, p := range pubs {
		out[i] = p.String()
	}
	return strings.Join(out, ", ")
}

func newPort(o *options) *cobra.Command {
	var protocol string
	var index int
	c := &cobra.Command{
		Use:               "port [OPTIONS] SERVICE PRIVATE_PORT",
		Short:             "Print the public address and port of a service's published port",
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, err := strconv.Atoi(args[1])
			if err != nil || target < 1 || target > 65535 {
				return &usageError{fmt.Errorf("private port %q: give a port number from 1 to 65535", args[1])}
			}
			if protocol != "tcp" && protocol != "udp" {
				return &usageError{fmt.Errorf("--protocol %q: use tcp or udp", protocol)}
			}
			rows, err := psRows(o, api.PsOptions{All: true, Services: args[:1]})
			if err != nil {
				return err
			}
			if index == 0 {
				index = 1
			}
			for _, r := range rows {
				if r.Replica != index {
					continue
				}
				for _, p := range r.Publishers {
					if p.TargetPort == target && p.Protocol == protocol {
						fmt.Fprintln(o.stdout, net.JoinHostPort(p.URL, strconv.Itoa(p.PublishedPort)))
						return nil
					}
				}
			}
			return fmt.Errorf("service %q: no port %d/%s is published; publish it with ports: in the compose file", args[0], target, protocol)
		},
	}
	c.Flags().StringVar(&protocol, "protocol", "tcp", "tcp or udp")
	c.Flags().IntVar(&index, "index", 0, "Replica number of the service (default 1)")
	return c
}
