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
	brk   lockBreak
}

// lockBreak are the --break and --force flags of lock and remote lock.
type lockBreak struct {
	brk, force bool
}

func (b *lockBreak) bind(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&b.brk, "break", false, "remove the lock when its holder is dead (no heartbeat for "+deployer.LockLease.String()+", or a process of this machine that no longer runs)")
	cmd.Flags().BoolVar(&b.force, "force", false, "with --break: also break a live holder's lock (that deploy stops before its next change, exit 5)")
}

// lockHelp is the part of lock's and remote lock's help that says how the
// lease and --break work.
var lockHelp = `The lock lives on the engine (a never-started container named
invdeploy-lock-<project>) and is a lease: its holder renews a heartbeat every
` + deployer.LockHeartbeat.String() + `. A holder is dead when its heartbeat is older than ` + deployer.LockLease.String() + `, or when it was a
process of this machine that no longer runs; the next deploy takes a dead holder's
lock over with a warning. lock says whether the holder is alive or dead.
--break removes a dead holder's lock and refuses a live one (exit 5); --break --force
removes it anyway, and the deploy that held it stops before its next change (exit 5):
every change a deploy makes is checked against the lease first.`

func newLockCommand(g *globalOptions) *cobra.Command {
	o := &lockOptions{}
	cmd := &cobra.Command{
		Use:   "lock [-p NAME] [--break]",
		Short: "Show who holds the project's deploy lock, or break it",
		Long: `up and down hold the project's deploy lock while they change the stack, so two
deploys - from this machine or another one deploying to the same engine - never
run at once: the second exits 5 and names the holder.

` + lockHelp,
		Example: `  invdeploy lock
  invdeploy lock -p shop --break
  invdeploy lock -p shop --break --force   # the holder is alive but you know better`,
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
	o.brk.bind(cmd)
	return cmd
}

// lockKeeper is what showOrBreakLock needs: a local or a remote deployer.
type lockKeeper interface {
	LockStatus(ctx context.Context, project string) (*deployer.LockHolder, time.Duration, error)
	BreakLock(ctx context.Context, project string, force bool) (*deployer.LockHolder, error)
}

// showOrBreakLock prints who holds project name's deploy lock on d's engine
// and whether the holder is alive, or breaks it (b); where names a remote
// engine in the messages (" on HOST"), "" for the local one.
func showOrBreakLock(ctx context.Context, g *globalOptions, d lockKeeper, name string, b lockBreak, where string) error {
	if b.force && !b.brk {
		return usagef("--force goes with --break")
	}
	if b.brk {
		h, err := d.BreakLock(ctx, name, b.force)
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
		state := "alive: that deploy stops before its next change"
		if why := h.Dead(time.Since(h.Heartbeat)); why != "" {
			state = "dead: " + why
		}
		fmt.Fprintf(g.stdout, "Project %s%s: broke the deploy lock of %s (%s)\n", name, where, h, state)
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
	dead := h.Dead(age)
	if g.Output == "json" {
		return writeJSON(g.stdout, map[string]any{"project": name, "holder": h, "heartbeat_age_seconds": age.Seconds(), "alive": dead == "", "dead_reason": dead})
	}
	state := "alive"
	if dead != "" {
		state = "dead (" + dead + "): the next deploy takes the lock over; lock --break removes it now"
	}
	fmt.Fprintf(g.stdout, "Project %s%s: deploy lock held by %s, last heartbeat %s ago, %s\n", name, where, h, age.Round(time.Second), state)
	return nil
}
