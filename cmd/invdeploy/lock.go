package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

type lockOptions struct {
	stack stackOptions
	brk   bool
}

func newLockCommand(g *globalOptions) *cobra.Command {
	o := &lockOptions{}
	cmd := &cobra.Command{
		Use:   "lock [-p NAME] [--break]",
		Short: "Show who holds the project's deploy lock, or break it",
		Long: `up and down hold the project's deploy lock while they change the stack, so two
deploys - from this machine or another one deploying to the same engine - never
run at once: the second exits 5 and names the holder. The lock lives on the engine
(a never-started container named invdeploy-lock-<project>) with a heartbeat every
5 s; a lock whose heartbeat is older than 30 s, or whose holder was a process of
this machine that no longer runs, is taken over by the next deploy with a warning.
--break removes it at once: use it only when you know the holder is dead.`,
		Example: `  invdeploy lock
  invdeploy lock -p shop --break`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			name, err := o.stack.projectName(cmd.Context(), g)
			if err != nil {
				return err
			}
			d, closeFn, err := g.deployer()
			if err != nil {
				return err
			}
			defer closeFn()
			return showOrBreakLock(cmd.Context(), g, d, name, o.brk, "")
		},
	}
	o.stack.bind(cmd, true)
	cmd.Flags().BoolVar(&o.brk, "break", false, "remove the lock whoever holds it (only when its holder is dead)")
	return cmd
}

// lockKeeper is what showOrBreakLock needs: a local or a remote deployer.
type lockKeeper interface {
	LockStatus(ctx context.Context, project string) (*deployer.LockHolder, time.Duration, error)
	BreakLock(ctx context.Context, project string) (*deployer.LockHolder, error)
}

// showOrBreakLock prints who holds project name's deploy lock on d's engine,
// or breaks it (brk); where names a remote engine in the messages (" on
// HOST"), "" for the local one.
func showOrBreakLock(ctx context.Context, g *globalOptions, d lockKeeper, name string, brk bool, where string) error {
	if brk {
		h, err := d.BreakLock(ctx, name)
		if err != nil {
			return err
		}
		if g.Output == "json" {
			return writeJSON(g.stdout, map[string]any{"project": name, "broken": h})
		}
		if h == nil {
			fmt.Fprintf(g.stdout, "Project %s%s: nobody held the deploy lock\n", name, where)
			return nil
		}
		fmt.Fprintf(g.stdout, "Project %s%s: broke the deploy lock of %s\n", name, where, h)
		return nil
	}
	h, age, err := d.LockStatus(ctx, name)
	if errors.Is(err, deployer.ErrNotFound) {
		if g.Output == "json" {
			return writeJSON(g.stdout, map[string]any{"project": name, "holder": nil})
		}
		fmt.Fprintf(g.stdout, "Project %s%s: the deploy lock is free\n", name, where)
		return nil
	}
	if err != nil {
		return err
	}
	if g.Output == "json" {
		return writeJSON(g.stdout, map[string]any{"project": name, "holder": h, "heartbeat_age_seconds": age.Seconds()})
	}
	fmt.Fprintf(g.stdout, "Project %s%s: deploy lock held by %s, last heartbeat %s ago\n", name, where, h, age.Round(time.Second))
	return nil
}
