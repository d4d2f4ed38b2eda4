package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"sstack/internal/images"
	"text/tabwriter"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"
)

// newImages is docker compose's images: the image each service uses.
func newImages(o *options) *cobra.Command {
	var format string
	var quiet bool
	c := &cobra.Command{
		Use:               "images [OPTIONS] [SERVICE...]",
		Short:             "List the image (SIF) each service uses: path, source, size, ID",
		ValidArgsFunction: completeServices(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "table" && format != "json" {
				return &usageError{fmt.Errorf("--format %q: use table or json", format)}
			}
			plan, err := o.load()
			if err != nil {
				return err
			}
			var rows []images.Row
			for _, r := range images.Rows(plan) {
				if len(args) == 0 || slices.Contains(args, r.Service) {
					rows = append(rows, r)
				}
			}
			for _, a := range args {
				if plan.Service(a) == nil {
					return fmt.Errorf("no such service: %s", a)
				}
			}
			switch {
			case quiet:
				for _, r := range rows {
					fmt.Fprintln(o.stdout, r.ID)
				}
			case format == "json":
				return json.NewEncoder(o.stdout).Encode(rows)
			default:
				tw := tabwriter.NewWriter(o.stdout, 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, "SERVICE\tIMAGE\tSOURCE\tIMAGE ID\tSIZE\tPATH")
				for _, r := range rows {
					size := "-"
					if r.Size > 0 {
						size = units.HumanSizeWithPrecision(float64(r.Size), 3)
					}
					id := images.ShortID(r.ID)
					if id == "" {
						id = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Service, r.Image, r.Source, id, size, r.Path)
				}
				_ = tw.Flush()
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "table", "Format the output: table or json")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display IDs")
	return c
}
