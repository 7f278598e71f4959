/*
 * The `keyraft agent` command: wires configuration, crypto, the replicated
 * state, raft, the keyring and the HTTP server onto one libuv loop and runs
 * it until SIGINT or SIGTERM.
 */
#ifndef KR_AGENT_AGENT_H
#define KR_AGENT_AGENT_H

/* Entry point of `keyraft agent [-dev] [-config PATH]...`; returns the
 * process exit code (0 ok, 1 error, 2 usage). */
int kr_agent_main(int argc, char **argv);

#endif
