package slurmtest

import (
	"slices"
	"testing"
)

func TestParseSteps(t *testing.T) {
	out := "8.51 sstack-agent n1\n8.extern extern n[1-3]\n8.batch batch n1\n8.interactive interactive n1\n8.52 my job n2\n\n"
	want := []Step{{"8.51", "sstack-agent", "n1"}, {"8.52", "my job", "n2"}}
	if got := parseSteps(out); !slices.Equal(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}
