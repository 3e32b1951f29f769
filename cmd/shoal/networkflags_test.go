package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	shoalpb "shoal/proto"
)

func TestParseNetwork(t *testing.T) {
	for _, c := range []struct {
		in   string
		want *shoalpb.NetworkAttachmentConfig
		err  string
	}{
		{in: "back", want: &shoalpb.NetworkAttachmentConfig{Target: "back"}},
		{in: "name=back,alias=db,alias=pg", want: &shoalpb.NetworkAttachmentConfig{Target: "back", Aliases: []string{"db", "pg"}}},
		{in: "back,alias=db", want: &shoalpb.NetworkAttachmentConfig{Target: "back", Aliases: []string{"db"}}},
		{in: "alias=db", err: "no network name"},
		{in: "back,mtu=9000", err: `unknown part "mtu=9000"`},
		{in: "back,alias=", err: `unknown part "alias="`},
	} {
		got, err := parseNetwork("--network", c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "--network") {
				t.Errorf("%q: err %v, want one naming --network and %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || !proto.Equal(got, c.want) {
			t.Errorf("%q: %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestEditNetworks(t *testing.T) {
	names := func(ts *shoalpb.TaskSpec) string {
		var out []string
		for _, n := range ts.Networks {
			out = append(out, n.Target+strings.Join(n.Aliases, "+"))
		}
		return strings.Join(out, ",")
	}
	for _, c := range []struct {
		name      string
		have      []string
		add, rm   []string
		want, err string
	}{
		{name: "add beside the implied default", add: []string{"back"}, want: "default,back"},
		{name: "add to listed", have: []string{"front"}, add: []string{"back,alias=db"}, want: "front,backdb"},
		{name: "re-add replaces", have: []string{"front", "back"}, add: []string{"back,alias=x"}, want: "front,backx"},
		{name: "remove", have: []string{"front", "back"}, rm: []string{"front"}, want: "back"},
		{name: "remove the last", have: []string{"back"}, rm: []string{"back"}, want: ""},
		{name: "remove absent", have: []string{"back"}, rm: []string{"front"}, err: "--network-rm front: the service is not on that network"},
		{name: "remove implied default", rm: []string{"default"}, err: "only on the default network"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := &shoalpb.TaskSpec{}
			for _, h := range c.have {
				ts.Networks = append(ts.Networks, &shoalpb.NetworkAttachmentConfig{Target: h})
			}
			u := &updateFlags{networkAdd: c.add, networkRm: c.rm}
			err := u.editNetworks(ts)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || names(ts) != c.want {
				t.Fatalf("networks %q, err %v; want %q", names(ts), err, c.want)
			}
		})
	}
}

func TestUpstreamAddr(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.53": "192.0.2.53:53", "127.0.0.1:5353": "127.0.0.1:5353"} {
		if got, err := upstreamAddr(in); err != nil || got != want {
			t.Errorf("upstreamAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "dns.example", "192.0.2.53:0", "192.0.2.53:99999", ":53"} {
		if _, err := upstreamAddr(bad); err == nil || !strings.Contains(err.Error(), "--dns-upstream") {
			t.Errorf("upstreamAddr(%q): err %v, want one naming --dns-upstream", bad, err)
		}
	}
}
