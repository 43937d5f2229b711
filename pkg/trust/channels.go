package trust

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/zeroboot/zeroboot/pkg/release"
	"github.com/zeroboot/zeroboot/pkg/strictjson"
)

// ChannelsFormat is the only channels file format this code understands.
const ChannelsFormat = "zeroboot-channels/1"

// maxChannels bounds the channels file.
const maxChannels = 64

// Channels is the part of a node's trust that is not in the TUF root: the
// release channels the node accepts, each with the lowest version it boots.
// It is built into the initramfs beside root.json, so a registry cannot
// move a node to a channel its operator never chose, and an image built
// after version N of a channel refuses anything older.
type Channels struct {
	Format   string             `json:"format"`
	Channels map[string]Channel `json:"channels"`
}

// Channel is one accepted channel.
type Channel struct {
	// MinVersion is the floor: a release (targets version) below it is a
	// rollback and is refused.
	MinVersion uint64 `json:"min_version"`
}

// ParseChannels decodes a channels file strictly and validates it.
func ParseChannels(b []byte) (*Channels, error) {
	var c Channels
	if err := strictjson.Decode(b, maxMetadataSize, &c); err != nil {
		return nil, fmt.Errorf("channels: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the format and every channel name.
func (c *Channels) Validate() error {
	if c.Format != ChannelsFormat {
		return fmt.Errorf("channels: format %q, want %q", clip(c.Format), ChannelsFormat)
	}
	if len(c.Channels) == 0 {
		return errors.New("channels: no channel: a node must accept at least one")
	}
	if len(c.Channels) > maxChannels {
		return fmt.Errorf("channels: %d channels, at most %d", len(c.Channels), maxChannels)
	}
	for name := range c.Channels {
		if err := release.CheckChannel(name); err != nil {
			return fmt.Errorf("channels: %w", err)
		}
	}
	return nil
}

// Names lists the accepted channels, sorted.
func (c *Channels) Names() []string {
	names := make([]string, 0, len(c.Channels))
	for n := range c.Channels {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Pick decides which channel a node follows. asked is zeroboot.channel
// (may be empty), offered the channel the registry's answer names. The
// command line and the registry may only choose among the accepted
// channels, never add one.
func (c *Channels) Pick(asked, offered string) (string, error) {
	ch := asked
	if ch == "" {
		ch = offered
	}
	if ch == "" && len(c.Channels) == 1 {
		ch = c.Names()[0]
	}
	if ch == "" {
		return "", fmt.Errorf("no channel chosen: this node accepts %s; set zeroboot.channel", strings.Join(c.Names(), ", "))
	}
	if _, ok := c.Channels[ch]; !ok {
		who := "the registry"
		if asked != "" {
			who = "zeroboot.channel"
		}
		return "", fmt.Errorf("channel %q (from %s) is not one this node accepts (%s)", clip(ch), who, strings.Join(c.Names(), ", "))
	}
	if asked != "" && offered != "" && offered != asked {
		return "", fmt.Errorf("registry answered for channel %q, this node follows %q", clip(offered), asked)
	}
	return ch, nil
}
