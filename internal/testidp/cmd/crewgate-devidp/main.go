// Command crewgate-devidp runs the OpenID Provider that crewgate's tests use,
// so humans can try `crewgate login` locally: a public client "crewgate",
// users alice/pw and bob/pw. It listens on loopback only and prints the
// issuer URL on stdout.
//
//	go run ./internal/testidp/cmd/crewgate-devidp -addr 127.0.0.1:9998 -interval 1s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/crewgate/crewgate/internal/testidp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9998", "loopback `host:port` to listen on")
	interval := flag.Duration("interval", time.Second, "device-flow polling `interval` to advertise (whole seconds)")
	flag.Parse()

	idp, err := testidp.New(*addr, testidp.WithInterval(*interval))
	if err != nil {
		fmt.Fprintf(os.Stderr, "crewgate-devidp: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(idp.Issuer)
	fmt.Fprintf(os.Stderr, "crewgate-devidp: client_id %s; users alice/%s (groups ml-engineers, crew-admins) and bob/%s; Ctrl-C stops\n",
		testidp.ClientID, testidp.Password, testidp.Password)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	if err := idp.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "crewgate-devidp: %v\n", err)
		os.Exit(1)
	}
}
