package main

import "testing"

// A password in either form of a connection string is found, so that
// zgrid serve refuses it on the command line.
func TestURLHasPassword(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"postgres://zgrid@db.example/zgrid", false},
		{"postgres://zgrid:s3cret@db.example/zgrid", true},
		{"postgresql://zgrid:@db.example/zgrid", true},
		{"postgres://zgrid@db.example/zgrid?sslmode=require&password=s3cret", true},
		{"postgres:///zgrid?host=/run/postgresql", false},
		{"host=db.example user=zgrid dbname=zgrid", false},
		{"host=db.example user=zgrid password=s3cret", true},
	} {
		if got := urlHasPassword(tc.url); got != tc.want {
			t.Errorf("urlHasPassword(%q) = %v, want %v", tc.url, got, tc.want)
		}
	}
}
