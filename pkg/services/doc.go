// Package services is Core-0's service manager: it runs the services a
// release declares, in dependency order, supervised, and reports their
// state.
//
// Order. A service starts as soon as every service it is After is ready;
// services that do not depend on each other start in parallel. Until then
// it is StateWaiting. A service waits only for its dependencies' first
// readiness: if a dependency fails later, its dependents keep running
// (they are expected to retry their connections, as across any restart),
// and if a dependency never becomes ready its dependents never start.
//
// Readiness. After each start a service is StateStarting until its Probe
// passes (an exec probe exits 0, a TCP connection opens, an HTTP GET
// answers 2xx, or the notify file appears), then StateReady; without a
// probe it is ready once started. A probe that has not passed Timeout
// (30 s) after the start counts as a crash: the process group is killed
// and the service restarted, with the reason "not ready after 30s: " and
// the probe's last error. Manager.Ready is true while every service that
// is not Optional is ready or has exited 0 with no restart due.
//
// Restarts. Each service has its own supervise.Supervisor: the service
// leads its own process group, whatever it leaves in the group is ended
// after it exits, and restarts follow exponential backoff with jitter and
// a cap (1 s doubling to 60 s by default), reset after a run of 60 s.
// RestartOnFailure does not restart after exit 0, RestartNever after any
// exit; exit 125 (supervise.ExitNoRestart) ends supervision under every
// policy. CrashLoopExits exits within CrashLoopWindow (5 in 5 minutes)
// make the state StateCrashLooping: restarts go on at the cap until a run
// lasts 60 s. Verify runs before every start; its error fails the
// service for good, since a restart would run the same bytes.
//
// Stop. When Run's context ends, every service is stopped once all its
// dependents are: SIGTERM to its process group, SIGKILL after its
// StopTimeout (10 s). Run returns when all are stopped.
//
// Output. A service's stdout and stderr go through one pipe, are split
// into lines of at most MaxLineBytes, sanitised (control characters and
// invalid UTF-8 replaced), written to Manager.Console as "name: line" and
// kept, the last OutputLines (40) of them, in Status.Output.
package services
