package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// outputFlag is the -o flag of the list and show commands: a table for
// people, JSON or YAML for scripts.
type outputFlag struct{ v *string }

func registerOutput(fs *flag.FlagSet) outputFlag {
	return outputFlag{fs.String("o", "table", "output: table, json or yaml")}
}

// check refuses anything but table, json and yaml, as a usage error.
func (o outputFlag) check(fs *flag.FlagSet) error {
	switch *o.v {
	case "table", "json", "yaml":
		return nil
	}
	return usageErr(fs, "-o %q: want table, json or yaml", *o.v)
}

// table says whether the command prints its own table.
func (o outputFlag) table() bool { return *o.v == "table" }

// print writes v as JSON or YAML. YAML is made from the JSON, so both
// have the same keys (the API's).
func (o outputFlag) print(v any) error {
	if *o.v == "json" {
		return printJSON(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return err
	}
	y, err := yaml.Marshal(generic)
	if err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	_, err = os.Stdout.Write(y)
	return err
}
