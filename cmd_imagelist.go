package main

import (
	"fmt"
	"slices"

	"github.com/docker/go-units"
	"github.com/spf13/cobra"

	"sstack/internal/images"
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
			return imageListing.print(o.stdout, format, quiet, rows)
		},
	}
	formatFlag(c, &format, "Format the output: table or json", "table", "json")
	c.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display IDs")
	return c
}

// imageListing is images' table; --quiet prints the image IDs.
var imageListing = listing[images.Row]{
	header: []string{"SERVICE", "IMAGE", "SOURCE", "IMAGE ID", "SIZE", "PATH"},
	key:    func(r images.Row) string { return r.ID },
	cells: func(r images.Row) []string {
		size := "-"
		if r.Size > 0 {
			size = units.HumanSizeWithPrecision(float64(r.Size), 3)
		}
		id := images.ShortID(r.ID)
		if id == "" {
			id = "-"
		}
		return []string{r.Service, r.Image, r.Source, id, size, r.Path}
	},
}
