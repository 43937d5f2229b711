package main

import "flag"

// outputFlag is the -o flag of the list commands: a table for people, or
// JSON for scripts.
type outputFlag struct{ v *string }

func registerOutput(fs *flag.FlagSet) outputFlag {
	return outputFlag{fs.String("o", "table", "output: table or json")}
}

// check refuses anything but table and json, as a usage error.
func (o outputFlag) check(fs *flag.FlagSet) error {
	if *o.v != "table" && *o.v != "json" {
		return usageErr(fs, "-o %q: want table or json", *o.v)
	}
	return nil
}

func (o outputFlag) json() bool { return *o.v == "json" }
