// Package runner starts the crew as crewgate's child process and sees it
// through to the end: it builds the child's environment (proxy, trust bundle
// and placeholders in, real credentials and keyring access out), forwards the
// termination signals crewgate receives without doubling the ones the terminal
// already delivered, ties the child's life to crewgate's, keeps the child's
// descendants in crewgate's process tree (a subreaper on Linux) and tells
// whether a process is one of them, and turns the way the child ended into
// the exit code crewgate exits with.
package runner
