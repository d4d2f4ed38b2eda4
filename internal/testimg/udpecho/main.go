// Command udpecho prints every datagram it receives on the UDP port given
// as its argument: a UDP server for the tests, which busybox lacks.
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	c, err := net.ListenPacket("udp", ":"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buf := make([]byte, 2048)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			os.Exit(1)
		}
		os.Stdout.Write(buf[:n])
	}
}
