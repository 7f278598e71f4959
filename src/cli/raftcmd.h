/*
 * `keyraft operator raft list-peers|remove-peer`: Nomad's raft operator
 * commands over /v1/operator/raft.  Named raftcmd to keep it apart from
 * src/cluster/raft.h, the consensus glue these commands talk to.
 */
#ifndef KR_CLI_RAFTCMD_H
#define KR_CLI_RAFTCMD_H

#include <stdio.h>

#include <jansson.h>

/* Command entry points (see kr_cli_main_fn); return the exit code. */
int kr_cli_raft_list_peers_main(int argc, char **argv);
int kr_cli_raft_remove_peer_main(int argc, char **argv);

/*
 * Prints the Servers of a /v1/operator/raft/configuration reply (`conf`,
 * borrowed) to fp as Nomad's list-peers table: a header row, then one row
 * per server sorted by Node, with State "leader" or "follower" and Voter
 * "true" or "false".  Returns 0, KR_EINVAL when conf has no Servers array
 * of objects (nothing printed), or KR_ENOMEM.  Any thread; no I/O but fp.
 */
int kr_cli_raft_print_peers(const json_t *conf, FILE *fp);

#endif
