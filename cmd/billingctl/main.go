// Command billingctl administers the billing service: schema migrations, API keys, the event
// pipeline's dead letters and rebuilds, and demo data.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/jackc/pgx/v5"

	"github.com/billing-oss/billing/httpapi"
	"github.com/billing-oss/billing/migrations"
)

const usage = `usage:
  billingctl migrate up            apply all pending migrations
  billingctl migrate down [N]      revert the last N migrations (default 1)
  billingctl apikey create --name NAME --scope read|write|admin
                                   create an API key; its secret is printed once, as the last line
  billingctl projections rebuild NAME|all
                                   rebuild a read model (or every one) from the event store into
                                   fresh tables and swap them in; the API keeps serving meanwhile
  billingctl dlq list [--group NAME] [--limit N]
                                   show the dead letters of a projector's consumer group (or all)
  billingctl dlq redrive [--group NAME] [ID...]
                                   apply dead letters again (all, or the given ids) from the event
                                   store; those that apply leave the table of dead letters
                                   (projection_dead_letters; ids are its numbers)
  billingctl demo seed [--url http://localhost:8080] [--key KEY] [--customers 120] [--seed 1]
                       [--start TIME]
                                   walk a billingd started with BILLING_TEST_CLOCK=true through a
                                   year of customers, upgrades, seat changes, pauses, failed and
                                   fixed cards, cancellations and renewals, through its API only;
                                   the key (admin) defaults to $BILLING_API_KEY, else .data/api-key

environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable)`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "billingctl:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	databaseURL := getenv("DATABASE_URL")
	if databaseURL == "" {
		databaseURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	if len(args) < 2 {
		return fmt.Errorf("missing command\n%s", usage)
	}
	switch args[0] + " " + args[1] {
	case "migrate up":
		if err := migrations.Up(databaseURL); err != nil {
			return err
		}
		fmt.Fprintln(out, "migrations applied")
		return nil
	case "migrate down":
		steps := 1
		if len(args) > 2 {
			n, err := strconv.Atoi(args[2])
			if err != nil || n < 1 {
				return fmt.Errorf("migrate down %q: want a positive number of steps", args[2])
			}
			steps = n
		}
		if err := migrations.Down(databaseURL, steps); err != nil {
			return err
		}
		fmt.Fprintf(out, "reverted %d migration(s)\n", steps)
		return nil
	case "apikey create":
		return createAPIKey(ctx, databaseURL, args[2:], out)
	case "projections rebuild":
		return rebuildProjections(ctx, databaseURL, args[2:], out)
	case "dlq list":
		return dlqList(ctx, databaseURL, args[2:], out)
	case "dlq redrive":
		return dlqRedrive(ctx, databaseURL, args[2:], out)
	case "demo seed":
		return demoSeed(ctx, args[2:], getenv, out)
	}
	return fmt.Errorf("unknown command %q\n%s", args[0]+" "+args[1], usage)
}

func createAPIKey(ctx context.Context, databaseURL string, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("apikey create", flag.ContinueOnError)
	name := fs.String("name", "", "a name for the key; recorded as the actor of the events it causes")
	scopeName := fs.String("scope", "", "read, write or admin")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("apikey create: --name is required")
	}
	scope, err := httpapi.ParseScope(*scopeName)
	if err != nil {
		return fmt.Errorf("apikey create: %w", err)
	}
	if err := migrations.Up(databaseURL); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(ctx)
	key, secret, err := httpapi.CreateAPIKey(ctx, conn, *name, scope)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "created API key %q (id %s, scope %s); store the secret now, it is not shown again:\n%s\n",
		key.Name, key.ID, key.Scope, secret)
	return nil
}
